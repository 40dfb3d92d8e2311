//! The child process of `teardown.rs`: puts runtime objects in thread-locals and lets the
//! thread that holds them exit, so they are dropped while that thread's locals are being
//! destroyed. A test harness runs every test on a thread of its own, so the *main* thread's
//! case (its locals are destroyed inside `exit`) needs a `main` of its own: this one.
//!
//! ```text
//! teardown-child tls <main|thread|worker> <item>... [tasks] [debug] [to_thread]
//! teardown-child leak <rc-cycle|forget|dropped|quiet-rc-cycle|exit-inside-block-on>
//! teardown-child block-on-in-destructor
//! ```
//!
//! `tls` creates the items, each in a thread-local of its own (touched in the order given,
//! so destroyed in the reverse order), on the main thread, on a spawned thread (joined), or
//! on a pool's worker thread (the pool shut down): `runtime`, `pool`, `handle` (of the
//! `runtime` item if there is one, else of a runtime on another thread), `job` (a
//! `JobHandle`, on the `pool` item if there is one), `remote` (a `RemoteJoinHandle` from
//! that handle). `tasks` leaves tasks pending in the runtime, `debug` turns its debug mode
//! on, `to_thread` starts its default pool. What is dropped says so on stderr
//! (`dropped: ...`), and `main` ends with `main returns`; the parent reads both, and the
//! exit status.
//!
//! `leak` makes a debug-mode runtime that is never dropped (or, for `dropped`, one that
//! is), for the exit report `OL009`. `block-on-in-destructor` runs a runtime from a
//! thread-local's destructor, which cannot work and must say why.

use std::cell::RefCell;
use std::future::pending;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{OnceLock, mpsc};
use std::thread;
use std::time::Duration;

use oneloop::{Handle, RemoteJoinHandle, Runtime};
use oneloop_pool::{JobHandle, ThreadPool};

/// Says on stderr that it was dropped: proof that a destructor ran.
struct Noisy(&'static str);

impl Drop for Noisy {
    fn drop(&mut self) {
        eprintln!("dropped: {}", self.0);
    }
}

/// The modifiers, read by the thread-locals' initializers.
static TASKS: AtomicBool = AtomicBool::new(false);
static DEBUG: AtomicBool = AtomicBool::new(false);
static TO_THREAD: AtomicBool = AtomicBool::new(false);

thread_local! {
    static RUNTIME: Runtime = Runtime::builder()
        .debug(DEBUG.load(Ordering::Relaxed))
        .build()
        .expect("runtime");
    static POOL: ThreadPool = ThreadPool::builder()
        .workers(2)
        .thread_name("tls-pool")
        .build()
        .expect("pool");
    static HANDLE: RefCell<Option<Handle>> = const { RefCell::new(None) };
    static JOB: RefCell<Option<JobHandle<()>>> = const { RefCell::new(None) };
    static REMOTE: RefCell<Option<RemoteJoinHandle<()>>> = const { RefCell::new(None) };
}

/// A runtime on a thread of its own, for a `handle` item on a thread without a runtime.
fn foreign_handle() -> Handle {
    static FOREIGN: OnceLock<Handle> = OnceLock::new();
    FOREIGN
        .get_or_init(|| {
            let (give, take) = mpsc::channel();
            thread::Builder::new()
                .name("foreign-loop".into())
                .spawn(move || {
                    let rt = Runtime::new();
                    give.send(rt.handle()).unwrap();
                    rt.block_on(pending::<()>());
                })
                .expect("foreign loop thread");
            take.recv().unwrap()
        })
        .clone()
}

/// A pool for a `job` item on a thread without a `pool` item.
fn shared_pool() -> ThreadPool {
    static SHARED: OnceLock<ThreadPool> = OnceLock::new();
    SHARED
        .get_or_init(|| ThreadPool::new(1).expect("pool"))
        .clone()
}

/// Every item, in the order they are filled (a `remote` needs the `handle`).
const ITEMS: [&str; 5] = ["runtime", "pool", "handle", "job", "remote"];

/// Creates `items` in this thread's locals. The locals are first touched in the order
/// given, which is the reverse of the order they are destroyed in.
fn fill_thread_locals(items: &[String]) {
    for item in items {
        match item.as_str() {
            "runtime" => RUNTIME.with(|_| ()),
            "pool" => POOL.with(|_| ()),
            "handle" => HANDLE.with(|_| ()),
            "job" => JOB.with(|_| ()),
            "remote" => REMOTE.with(|_| ()),
            other => panic!("teardown-child: unknown item {other:?}"),
        }
    }
    let has = |name: &str| items.iter().any(|item| item == name);
    for item in ITEMS.into_iter().filter(|item| has(item)) {
        match item {
            "runtime" => RUNTIME.with(|rt| {
                if TASKS.load(Ordering::Relaxed) {
                    rt.spawn(async {
                        let _noisy = Noisy("pending task");
                        oneloop::time::sleep(Duration::MAX).await;
                    })
                    .detach();
                    // A task whose handle is kept by another task.
                    let inner = rt.spawn(async {
                        let _noisy = Noisy("awaited task");
                        pending::<()>().await;
                    });
                    rt.spawn(async move {
                        let _ = inner.await;
                    })
                    .detach();
                }
                rt.block_on(async {
                    if TO_THREAD.load(Ordering::Relaxed) {
                        oneloop::to_thread(|| ()).await.expect("to_thread");
                        if TASKS.load(Ordering::Relaxed) {
                            oneloop::spawn(async {
                                let _noisy = Noisy("task awaiting to_thread");
                                let _ =
                                    oneloop::to_thread(|| thread::sleep(Duration::from_millis(5)))
                                        .await;
                            })
                            .detach();
                        }
                    }
                    oneloop::task::yield_now().await; // the tasks start
                });
            }),
            "pool" => POOL.with(|pool| {
                drop(pool.spawn(|| drop(Noisy("a job of the pool in a thread-local"))));
            }),
            "handle" => {
                let handle = if has("runtime") {
                    RUNTIME.with(Runtime::handle)
                } else {
                    foreign_handle()
                };
                HANDLE.with(|slot| *slot.borrow_mut() = Some(handle));
            }
            "job" => {
                let pool = if has("pool") {
                    POOL.with(ThreadPool::clone)
                } else {
                    shared_pool()
                };
                let job = pool.spawn(|| thread::sleep(Duration::from_millis(1)));
                JOB.with(|slot| *slot.borrow_mut() = Some(job));
            }
            "remote" => {
                let handle = HANDLE
                    .with(|slot| slot.borrow().clone())
                    .unwrap_or_else(foreign_handle);
                // Made out here: the loop may never poll the task before it is dropped.
                let noisy = Noisy("remote task");
                let remote = handle.spawn(async move {
                    let _noisy = noisy;
                    pending::<()>().await;
                });
                REMOTE.with(|slot| *slot.borrow_mut() = Some(remote));
            }
            _ => unreachable!(),
        }
    }
}

fn thread_locals(args: &[String]) {
    let (place, rest) = args.split_first().expect("where: main, thread or worker");
    let mut items = Vec::new();
    for arg in rest {
        match arg.as_str() {
            "tasks" => TASKS.store(true, Ordering::Relaxed),
            "debug" => DEBUG.store(true, Ordering::Relaxed),
            "to_thread" => TO_THREAD.store(true, Ordering::Relaxed),
            _ => items.push(arg.clone()),
        }
    }
    match place.as_str() {
        // Dropped inside `exit`, after `main` returns.
        "main" => fill_thread_locals(&items),
        "thread" => thread::Builder::new()
            .name("tls-thread".into())
            .spawn(move || fill_thread_locals(&items))
            .expect("thread")
            .join()
            .expect("the thread holding the locals"),
        "worker" => {
            let host = ThreadPool::builder()
                .workers(1)
                .thread_name("tls-host")
                .build()
                .expect("host pool");
            host.spawn(move || fill_thread_locals(&items))
                .join()
                .expect("the job filling the worker's locals");
            // The worker leaves its loop and its locals are destroyed.
            host.shutdown();
        }
        other => panic!("teardown-child: unknown place {other:?}"),
    }
}

fn leak(kind: &str) {
    let debug = kind != "quiet-rc-cycle";
    let rt = Rc::new(Runtime::builder().debug(debug).build().expect("runtime"));
    match kind {
        // A task holds its own runtime: neither is ever dropped.
        "rc-cycle" | "quiet-rc-cycle" => {
            let mine = rt.clone();
            rt.spawn(async move {
                let _rt = mine;
                pending::<()>().await;
            })
            .detach();
            rt.block_on(oneloop::task::yield_now());
        }
        "forget" => std::mem::forget(rt.clone()),
        "dropped" => {
            rt.spawn(pending::<()>()).detach();
            rt.block_on(oneloop::task::yield_now());
        }
        // `exit` while the runtime runs: it is not leaked, it is running.
        "exit-inside-block-on" => rt.block_on(async {
            eprintln!("main returns");
            std::process::exit(0);
        }),
        other => panic!("teardown-child: unknown leak {other:?}"),
    }
    drop(rt);
}

/// Holds a runtime and runs it once more when dropped: from a thread-local's destructor,
/// after oneloop's own thread-local is gone. The loop cannot run there; it must say so.
struct BlockOnInDrop(Runtime);

impl Drop for BlockOnInDrop {
    fn drop(&mut self) {
        self.0.block_on(async {});
    }
}

thread_local! {
    static BLOCKS_ON_IN_DROP: BlockOnInDrop = BlockOnInDrop(Runtime::new());
}

fn block_on_in_destructor() {
    thread::spawn(|| {
        // Created before oneloop's thread-local, so destroyed after it.
        BLOCKS_ON_IN_DROP.with(|holder| holder.0.block_on(async {}));
    })
    .join()
    .expect("thread");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("tls") => thread_locals(&args[1..]),
        Some("leak") => leak(args.get(1).expect("which leak")),
        Some("block-on-in-destructor") => block_on_in_destructor(),
        _ => {
            eprintln!("usage: teardown-child tls|leak ... (run by tests/teardown.rs)");
            std::process::exit(2);
        }
    }
    eprintln!("main returns");
}
