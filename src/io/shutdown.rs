//! Graceful shutdown: SIGINT and SIGTERM become a signal every task can wait on.
//!
//! Each worker's runtime sits on a tokio current-thread runtime, so a `tokio::sync::watch`
//! channel wakes tasks on every worker from the signal thread without touching the rings.

use tokio::sync::watch;

/// Fires the shutdown.
#[derive(Debug)]
pub struct Trigger(watch::Sender<bool>);

/// Waits for the shutdown; clone one per task.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// A trigger and the first of its listeners.
pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Shutdown(rx))
}

impl Trigger {
    /// Tells every [`Shutdown`] to stop.
    pub fn fire(&self) {
        self.0.send_replace(true);
    }

    /// Fires on the first SIGINT or SIGTERM, from a thread of its own.
    pub fn fire_on_signals(self) -> std::io::Result<()> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
        std::thread::Builder::new()
            .name("feedrelay-signals".into())
            .spawn(move || {
                if let Some(sig) = signals.forever().next() {
                    tracing::info!(signal = sig, "shutting down");
                    self.fire();
                }
            })?;
        Ok(())
    }
}

impl Shutdown {
    /// Whether shutdown has begun.
    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once shutdown has begun (at once if it already has). If the trigger is
    /// dropped without firing, this never resolves.
    pub async fn wait(&mut self) {
        if self.0.wait_for(|&v| v).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
