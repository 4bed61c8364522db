//! The HTTP layer: routes, auth, validation into typed requests, error mapping, OpenAPI and SSE.
pub mod ui;
