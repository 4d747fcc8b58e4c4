//! Derivatives: what a viewer sees, made from the stored original.
