//! End to end over loopback: `start_udp` with the real pipeline, a sender thread using
//! plain `send_to`, timed until the store has counted every line (bounded: a lost datagram
//! ends the wait at a deadline and is reported). One hot series, packed datagrams.

use std::net::UdpSocket;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use statsgate::expose::text::render_to_string;
use statsgate::ingest::{UdpOptions, start_udp};
use statsgate::line::Dialects;
use statsgate::mapping::{CacheOptions, LiveMapper, Mapper, Profile};
use statsgate::store::{Store, StoreOptions};
use statsgate::worker::Workers;

const NAME: &str = "bench_hot_total";
const DATAGRAMS_PER_ITER: usize = 2_000;

/// The hot counter's value, read through the exposition (the store has no public getter).
fn counted(store: &Store) -> f64 {
    render_to_string(store, &[])
        .lines()
        .find_map(|l| l.strip_prefix(NAME).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

fn udp(c: &mut Criterion) {
    let store = Arc::new(Store::new(StoreOptions::default()));
    let workers = Workers::new(
        store.clone(),
        Arc::new(LiveMapper::new(Mapper::empty(CacheOptions::default()))),
        Dialects::default(),
        Profile::Statsd,
    );
    let opts = UdpOptions {
        addr: "127.0.0.1:0".parse().unwrap(),
        sockets: 1,
        read_buffer: statsgate::ingest::ReadBuffer::Bytes(8 << 20),
        batch: 32,
        ..Default::default()
    };
    let listener = start_udp(&opts, Arc::new(workers)).unwrap();
    let target = listener.local_addr().unwrap();

    let line = format!("{NAME}:1|c");
    let per_datagram = 1400 / (line.len() + 1);
    let datagram = vec![line; per_datagram].join("\n").into_bytes();
    let lines_per_iter = (per_datagram * DATAGRAMS_PER_ITER) as u64;
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();

    let mut expected = 0.0;
    let mut lost = 0.0;
    let mut g = c.benchmark_group("udp");
    g.throughput(Throughput::Elements(lines_per_iter));
    g.bench_function("hot_packed_send_to", |b| {
        b.iter_custom(|iters| {
            let started = Instant::now();
            for _ in 0..iters {
                let sender = {
                    let (sock, datagram) = (sock.try_clone().unwrap(), datagram.clone());
                    std::thread::spawn(move || {
                        for _ in 0..DATAGRAMS_PER_ITER {
                            let _ = sock.send_to(&datagram, target);
                        }
                    })
                };
                sender.join().unwrap();
                expected += lines_per_iter as f64;
                let deadline = Instant::now() + Duration::from_millis(200);
                loop {
                    let seen = counted(&store);
                    if seen >= expected || Instant::now() > deadline {
                        // Re-base so one loss does not stall every later iteration.
                        lost += expected - seen;
                        expected = seen;
                        break;
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            started.elapsed()
        })
    });
    g.finish();
    eprintln!("udp bench: {lost} lines lost in total (kernel drops on the loopback socket)");
    listener.shutdown();
}

criterion_group!(benches, udp);
criterion_main!(benches);
