//! One module per scenario; each has a `run` that starts its own server.

pub(crate) mod backlog;
pub(crate) mod cluster;
pub(crate) mod dead_endpoint;
pub(crate) mod e2e;
pub(crate) mod fanout;
pub(crate) mod ingest;
pub(crate) mod one_host;
pub(crate) mod steady;
