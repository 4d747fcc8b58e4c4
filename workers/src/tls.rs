//! The one TLS crypto provider of the process (rustls on ring), installed
//! before any HTTPS client is built: webhooks now, object storage later.
//! ring keeps the build to a small C/assembly core instead of a large C
//! library.

/// Installs the provider; harmless when one is installed already.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
