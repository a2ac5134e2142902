//! Deadlines on glommio futures.

use std::time::Duration;

use futures::future::{Either, select};
use glommio::timer::Timer;

/// `future`'s output, or `None` if `limit` passes first (the future is then dropped).
pub async fn within<T>(limit: Duration, future: impl Future<Output = T>) -> Option<T> {
    let future = std::pin::pin!(future);
    match select(future, Timer::new(limit)).await {
        Either::Left((output, _)) => Some(output),
        Either::Right((_elapsed, _)) => None,
    }
}
