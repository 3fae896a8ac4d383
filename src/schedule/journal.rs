//! Group commit: transitions accumulate while the previous batch is being committed, then go to
//! the ledger as one transaction. A durable ledger commits on its own thread so the scheduler
//! never waits on fsync; the in-memory ledger commits inline (which keeps paused-time tests
//! deterministic).

use std::sync::mpsc;
use std::thread::JoinHandle;

use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use crate::ledger::{Ledger, LedgerError, Op};

pub enum Journal {
    Inline(Box<dyn Ledger>),
    Thread {
        batches: Option<mpsc::Sender<Vec<Op>>>,
        acks: UnboundedReceiver<Result<(), LedgerError>>,
        writer: Option<JoinHandle<()>>,
    },
}

impl Journal {
    /// Commits on a dedicated thread.
    pub fn threaded(mut ledger: Box<dyn Ledger>) -> Journal {
        let (batch_tx, batch_rx) = mpsc::channel::<Vec<Op>>();
        let (ack_tx, acks) = unbounded_channel();
        let writer = std::thread::Builder::new()
            .name("drover-ledger".into())
            .spawn(move || {
                for batch in batch_rx {
                    if ack_tx.send(ledger.apply(&batch)).is_err() {
                        break;
                    }
                }
            })
            .expect("spawn the ledger writer thread");
        Journal::Thread {
            batches: Some(batch_tx),
            acks,
            writer: Some(writer),
        }
    }

    pub fn inline(ledger: Box<dyn Ledger>) -> Journal {
        Journal::Inline(ledger)
    }

    /// Starts committing a batch. Inline journals commit now and return the result at once.
    pub fn submit(&mut self, batch: Vec<Op>) -> Option<Result<(), LedgerError>> {
        match self {
            Journal::Inline(ledger) => Some(ledger.apply(&batch)),
            Journal::Thread { batches, .. } => {
                let sent = batches.as_ref().is_some_and(|b| b.send(batch).is_ok());
                if sent { None } else { Some(Err(writer_gone())) }
            }
        }
    }

    /// Waits for the submitted batch to be durable.
    pub async fn durable(&mut self) -> Result<(), LedgerError> {
        match self {
            Journal::Inline(_) => Ok(()),
            Journal::Thread { acks, .. } => acks.recv().await.unwrap_or_else(|| Err(writer_gone())),
        }
    }

    /// Stops the writer thread after its last batch.
    pub fn close(&mut self) {
        if let Journal::Thread {
            batches, writer, ..
        } = self
        {
            batches.take();
            if let Some(w) = writer.take() {
                let _ = w.join();
            }
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.close();
    }
}

fn writer_gone() -> LedgerError {
    LedgerError::WriterStopped
}
