//! What the loop is asked from outside it: the messages of the command
//! channel. A leaf: the handle (`commands`) and the replay feeder
//! (`replay`) both send them, and neither knows the other's module.

use hookrelay_core::{DeliveryKey, DeliveryRecord};
use hookrelay_store::ControlError;
use tokio::sync::oneshot;

pub(crate) enum Command {
    /// Attempt a delivery again now.
    Retry {
        key: DeliveryKey,
        reply: oneshot::Sender<Result<(), ControlError>>,
    },
    /// New pending deliveries of a replay, due now.
    Replayed(Vec<(DeliveryKey, DeliveryRecord)>),
}
