//! Smoke test of the async client: round trips, batches, 64 tasks sharing connections.
#![cfg(feature = "tokio")]
#[path = "common/memcached.rs"]
mod server;
use nearfar::memcached::Client;
use server::Memcached;
use std::time::Duration;

#[test]
fn smoke() {
    let server = Memcached::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(2)
        .build()
        .unwrap();
    rt.block_on(async {
        let client = Client::builder()
            .servers([server.addr()])
            .build_async()
            .unwrap();
        client.set("a", &1u32, Duration::ZERO).await.unwrap();
        assert_eq!(client.get::<u32>("a").await.unwrap(), Some(1));
        assert_eq!(client.get::<u32>("b").await.unwrap(), None);
        client
            .set_many(&[("x", &1u8), ("y", &2u8)], Duration::ZERO)
            .await
            .unwrap();
        let m = client.get_many::<u8>(&["x", "y", "z"]).await.unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(client.incr("n", 1).await.unwrap(), None);
        let v = client.version().await.unwrap();
        assert_eq!(v.len(), 1);
        let mut handles = Vec::new();
        for t in 0..64u32 {
            let c = client.clone();
            handles.push(tokio::spawn(async move {
                for i in 0..200u32 {
                    let k = format!("k{t}_{i}");
                    c.set(&k, &(t * 1000 + i), Duration::ZERO).await.unwrap();
                    assert_eq!(c.get::<u32>(&k).await.unwrap(), Some(t * 1000 + i));
                }
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
    });
}
