//! What at-rest encryption and keyed-hash lookups cost next to the message path.
//!
//! `cargo bench --bench at_rest`. The channel-message path stores client ciphertext as it is (no
//! at-rest encryption); a broadcast adds two field encryptions; logins add one username HMAC and
//! one device-key HMAC lookup. These benches time those operations and the per-message work the
//! server does anyway (serializing the fan-out event), for comparison with the measured
//! per-message cost of the whole path (BENCHMARKS.md).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use dialtone::crypto::field::{Column, FieldCipher};
use dialtone::crypto::keyed_hash::KeyedHasher;
use dialtone::protocol::ws::Event;

fn bench(c: &mut Criterion) {
    let cipher = FieldCipher::new(&[7u8; 32], &[&[9u8; 32]]);
    let hasher = KeyedHasher::new(b"pepper-pepper-pepper", &[7u8; 32], &[]);
    let row = "0192f5c4-8b1e-7cc3-9a55-0f3c2f1b7e01";
    let sender_name = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4v";
    let public_key = "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=";
    let stored = cipher.encrypt(Column::BroadcastSenderName, row, sender_name);

    c.bench_function("field encrypt (broadcast sender name)", |b| {
        b.iter(|| {
            cipher.encrypt(
                Column::BroadcastSenderName,
                black_box(row),
                black_box(sender_name),
            )
        })
    });
    c.bench_function("field decrypt (broadcast sender name)", |b| {
        b.iter(|| {
            cipher.decrypt(
                Column::BroadcastSenderName,
                black_box(row),
                black_box(&stored),
            )
        })
    });
    c.bench_function("username HMAC", |b| {
        b.iter(|| hasher.username_hash(black_box("alice")))
    });
    c.bench_function("device key HMAC", |b| {
        b.iter(|| hasher.device_key_hash(black_box(public_key)))
    });
    let body = "A".repeat(216);
    c.bench_function("serialize one channel.message.new event (baseline)", |b| {
        b.iter(|| {
            let e = Event::channel_message(
                row.to_owned(),
                row.to_owned(),
                row.to_owned(),
                sender_name.to_owned(),
                black_box(body.clone()),
                "2026-11-28T12:00:00.000000Z".to_owned(),
                Some("lt:1:2".to_owned()),
            );
            serde_json::to_string(&e)
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
