//! Tasks woken from another thread, stressed.
//!
//! A shard's request tasks are woken by other shards' threads when their answers arrive.
//! glommio 0.9.0 dropped such a waker's reference on the waking thread: the count touched
//! zero and was raised again to hand the task back, and a task that finished in between
//! was freed under it, so the owning shard later woke freed memory and crashed (a SIGSEGV
//! in `RawTask::do_wake`, about once per million cross-shard requests under load). The
//! vendored glommio hands a foreign thread's last reference to the owner instead
//! (`third_party/glommio/STRAND-PATCHES.md`). This runs that pattern for a few seconds: with
//! the old code it crashed within them here; it cannot prove the absence of the race, only
//! keep its most likely form exercised.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::time::{Duration, Instant};

use futures::channel::oneshot;
use glommio::LocalExecutorBuilder;

const TASKS_IN_FLIGHT: usize = 64;
const RUN_FOR: Duration = Duration::from_secs(3);

#[test]
fn tasks_woken_and_released_by_another_thread_finish_cleanly() {
    let (senders, received) = flume::unbounded::<oneshot::Sender<u64>>();
    let waker_thread = std::thread::spawn(move || {
        for (count, sender) in received.iter().enumerate() {
            let _ = sender.send(count as u64);
        }
    });
    let finished = LocalExecutorBuilder::default()
        .spawn(move || async move {
            let deadline = Instant::now() + RUN_FOR;
            let mut finished = 0u64;
            while Instant::now() < deadline {
                let tasks: Vec<_> = (0..TASKS_IN_FLIGHT)
                    .map(|_| {
                        let senders = senders.clone();
                        glommio::spawn_local(async move {
                            let (sender, mut answer) = oneshot::channel();
                            // Registers this task's waker before the other thread can answer,
                            // so every answer wakes it from that thread.
                            assert!(futures::poll!(&mut answer).is_pending());
                            senders.send(sender).unwrap();
                            answer.await.is_ok()
                        })
                        .detach()
                    })
                    .collect();
                for task in tasks {
                    assert_eq!(task.await, Some(true));
                    finished += 1;
                }
            }
            finished
        })
        .unwrap()
        .join()
        .unwrap();
    waker_thread.join().unwrap();
    eprintln!("{finished} tasks finished");
    assert!(finished > 0);
}
