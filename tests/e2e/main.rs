//! End-to-end tests: the real `hookrelay` binary, real gRPC, real HTTP

#![allow(unreachable_pub)]
//! receivers on 127.0.0.1.

mod support;

mod abuse;
mod availability;
mod cluster;
mod console;
mod crash;
mod crash_matrix;
mod delivery;
mod docs;
mod durability;
mod edges;
mod encodings;
mod faults;
mod foundation;
mod isolation;
mod ops;
mod org_webhooks;
mod profiles;
mod resources;
mod restart;
mod soak;
mod tls;
mod trust;
mod visibility;
