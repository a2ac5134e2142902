//! `strand-net`: Strand's Kafka wire protocol. Every shard listens on the same port
//! (SO_REUSEPORT lets the kernel spread connections); a connection lives on the shard that
//! accepted it, which decodes its requests, sends each part to the shard that owns the
//! partition through the engine's [`Router`], and answers in request order.
//!
//! Modules: [`config`] (addresses and bounds), [`frame`] (length-prefixed frames),
//! [`connection`] (one client: pipelined requests, ordered answers), [`api`] (the version
//! table, routing and one module per Kafka API), [`kafka_errors`] (engine errors to Kafka
//! codes), [`broker`] (what the handlers of a shard share).

pub mod api;
pub mod broker;
pub mod broker_configs;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod frame;
pub mod groups;
pub mod kafka_errors;
pub mod metrics;
pub mod timeout;

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use glommio::net::TcpListener;
use strand_engine::Router;

pub use broker::Broker;
pub use config::{NetConfig, NetLimits};
pub use groups::coordinator::Coordinators;
pub use metrics::MetricsHub;

/// Serves Kafka clients on this shard until the shard stops. Reports on `ready` once the
/// listener is bound (or why it could not be); the caller decides whether that is fatal.
pub async fn serve(
    router: Router,
    config: Rc<NetConfig>,
    ready: flume::Sender<Result<SocketAddr, String>>,
    coordinators: Arc<Coordinators>,
    metrics: Arc<MetricsHub>,
) {
    let shard = router.shard();
    let listener = match TcpListener::bind(config.listen) {
        Ok(listener) => listener,
        Err(error) => {
            let _ = ready.send(Err(format!(
                "shard {shard} cannot listen on {}: {error}",
                config.listen
            )));
            return;
        }
    };
    let _ = ready.send(Ok(listener.local_addr().unwrap_or(config.listen)));
    let inbox = coordinators.take_inbox(router.shard().index());
    let broker = Rc::new(Broker::new(router, config, coordinators));
    if let Some(inbox) = inbox {
        glommio::spawn_local(groups::coordinator::run(broker.clone(), inbox)).detach();
    }
    if let Some(cluster) = &broker.config.cluster {
        let driver = strand_replication::binding::run_shard(broker.router.clone(), cluster.clone());
        glommio::spawn_local(driver).detach();
    }
    if let Some(inbox) = metrics.take_inbox(broker.router.shard().index()) {
        glommio::spawn_local(metrics::answer(broker.clone(), inbox)).detach();
    }
    loop {
        let stream = match listener.accept().await {
            Ok(stream) => stream,
            Err(error) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(%shard, %error, "accept failed");
                glommio::timer::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let open = broker.connections.get();
        if open >= broker.config.limits.connections_max {
            tracing::warn!(%shard, open, "connection refused: the shard holds its maximum");
            drop(stream);
            continue;
        }
        broker.connections.set(open + 1);
        let broker = broker.clone();
        glommio::spawn_local(async move {
            connection::serve_connection(broker.clone(), stream).await;
            broker.connections.set(broker.connections.get() - 1);
        })
        .detach();
    }
}
