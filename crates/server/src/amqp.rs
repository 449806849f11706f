//! The AMQP listener: accepts connections and gives each its own task.
//! On shutdown it stops accepting, lets each connection tell its client
//! (connection.close 320) and waits for them to end.

use std::sync::Arc;

use ferry_amqp::Amqp;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub fn serve(
    tasks: &mut JoinSet<()>,
    listener: TcpListener,
    amqp: Arc<Amqp>,
    mut stopped: watch::Receiver<bool>,
) {
    tasks.spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        // Frames are batched per turn already; don't let Nagle hold them.
                        let _ = stream.set_nodelay(true);
                        connections.spawn(Arc::clone(&amqp).serve(stream, peer, stopped.clone()));
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!(error = %e, "accepting an AMQP connection failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                },
                // Finished connections are reaped as they go.
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                () = until_stopped(&mut stopped) => break,
            }
        }
        while connections.join_next().await.is_some() {}
    });
}

async fn until_stopped(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}
