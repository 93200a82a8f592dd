//! Shared ground of polaris-bridge and its connectors: the Polaris event model, its wire
//! codecs, the deterministic task id, the CloudEvents attribute mapping ([`cloudevents`]),
//! and the [`Connector`] trait every connector implements.

pub mod cloudevents;
pub mod codec;
pub mod connector;
pub mod event;
pub mod filter;
pub mod samples;
pub mod task_id;

pub use connector::{Connector, Delivery, DeliveryError, DeliveryOutcome, TaskContext, TaskPlan};
pub use event::PolarisEvent;
pub use task_id::TaskId;
