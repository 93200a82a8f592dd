//! polaris-bridge: turns Apache Polaris catalog events from Kafka into durable, deduplicated
//! tasks, delivered at least once to connectors.
//!
//! Flow: [`source`] (Kafka consumer) -> decode ([`polaris_bridge_api::codec`]) -> [`route`]
//! -> [`log`] (sled task log, flushed before offsets are stored) -> [`dispatch`] (one
//! dispatcher per connector) -> connectors ([`connectors`]).

pub mod admin;
#[cfg(feature = "mimalloc")]
pub mod allocator;
pub mod app;
pub mod c_heap;
pub mod config;
pub mod connectors;
pub mod demo;
pub mod dispatch;
pub mod http;
pub mod log;
pub mod metrics;
pub mod route;
pub mod source;
pub mod table_lookup;
