//! A stream processor embedding streamscore: producer threads submit events without blocking,
//! an async task awaits its scores, and the metrics are printed in Prometheus text at the end.
//!
//! `cargo run --release --example embed`

use std::sync::Arc;
use std::time::Duration;

use streamscore::{Error, Event, Overload, Runtime, RuntimeConfig};

fn main() -> Result<(), Error> {
    let config = RuntimeConfig::default()
        .with_max_batch(128)
        .with_max_delay(Duration::from_micros(300))
        .with_overload(Overload::Block);
    let model = concat!(env!("CARGO_MANIFEST_DIR"), "/models/golden/lgb_binary/model.txt");
    let rt = Arc::new(Runtime::builder().model_path(model).config(config).build()?);
    println!("backend {}, features {:?}", rt.backend_name(), rt.schema().names());

    // Four producer threads, each with its own events; every ticket is answered exactly once.
    let producers: Vec<_> = (0..4u64)
        .map(|p| {
            let rt = rt.clone();
            std::thread::spawn(move || -> Result<f32, Error> {
                let mut tickets = Vec::new();
                for i in 0..10_000u64 {
                    let row = [
                        (i % 17) as f32 * 0.25 - 2.0,
                        p as f32,
                        0.5,
                        1.0,
                        f32::NAN,
                        -1.0,
                        0.0,
                        2.0,
                    ];
                    // A 5 ms deadline: an event stuck longer is answered `Expired`, not scored.
                    let event = Event::new(row).with_key(p).with_timeout(Duration::from_millis(5));
                    match rt.try_submit(event) {
                        Ok(ticket) => tickets.push(ticket),
                        // The queue is full: the event comes back; score it blocking instead.
                        Err(rejected) => {
                            rt.score(rejected.event)?;
                        }
                    }
                }
                let mut sum = 0.0;
                for t in tickets {
                    match t.wait() {
                        Ok(score) => sum += score.value(),
                        Err(Error::Expired { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(sum)
            })
        })
        .collect();
    for p in producers {
        println!("producer sum of scores: {:.3}", p.join().expect("producer thread")?);
    }

    // Async callers await their score; the future waits for room, then for the answer.
    let by_name = rt.schema().event([("f0", 1.5), ("f3", -0.5)])?;
    let score = futures_lite_block_on(rt.submit(by_name))?;
    println!("named event: {:.4} (model version {:x})", score.value(), score.model_version);

    rt.shutdown();
    print!("{}", rt.metrics().prometheus());
    Ok(())
}

/// A minimal executor for the example (real users bring tokio, smol or async-std).
fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}
