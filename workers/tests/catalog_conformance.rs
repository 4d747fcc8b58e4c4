//! One conformance suite for the catalog and its queue, run against every
//! SQL backend: SQLite (a file in a temporary directory) and PostgreSQL (a
//! fresh database per test on the server named by `RELAY_TEST_POSTGRES`;
//! without it those tests skip loudly, and fail under
//! `RELAY_REQUIRE_SERVICES=1`).
//!
//! Everything goes through the public traits, as the front doors and stages
//! use them. Test names read `<area>::<check>::<backend>`.

mod conformance;
