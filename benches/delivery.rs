//! The server's per-delivery hot path, without sockets: what one committed message costs between
//! the group commit and the bytes handed to TLS.
//!
//! `cargo bench --bench delivery`. Steps, as fan-out runs them (BENCHMARKS.md, "Delivery hot
//! path"): the `channel.message.new` frame is serialized once per message; the delivery shard
//! writes it into each member's outbox (`Sink::write`: WebSocket framing and the bound checks);
//! each connection takes its chunk (`Outbox::next_chunk`). The per-member steps are timed for a
//! channel of 100 members, so a regression in the per-delivery work shows 100-fold.

use std::hint::black_box;

use actix::prelude::*;
use criterion::{Criterion, criterion_group, criterion_main};
use dialtone::actors::{Outbound, message_frame};
use dialtone::db::models::MessageRow;
use dialtone::db::types::Time;
use dialtone::ws::frames::{Outbox, SharedOutbox};
use dialtone::ws::shard::Sink;

/// Stands in for the session actor, which a sink tells only about backlogs.
struct Session;

impl Actor for Session {
    type Context = Context<Self>;
}

impl Handler<Outbound> for Session {
    type Result = ();
    fn handle(&mut self, _: Outbound, _: &mut Context<Self>) {}
}

const MEMBERS: usize = 100;

fn row() -> MessageRow {
    let id = "0192f5c4-8b1e-7cc3-9a55-0f3c2f1b7e01".to_owned();
    MessageRow {
        id: id.clone(),
        channel_id: id.clone(),
        sender_id: id,
        sender_name_enc: "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4v"
            .to_owned(),
        // A 128-byte plaintext sealed as the load generator does: nonce + ciphertext + tag, base64.
        body: "A".repeat(216),
        sent_at: Time(chrono::Utc::now()),
        client_message_id: Some("lt:1:2".to_owned()),
        seq: 42,
    }
}

fn bench(c: &mut Criterion) {
    let system = System::new();
    system.block_on(async {
        let session = Session.start().recipient::<Outbound>();
        let outboxes: Vec<SharedOutbox> = (0..MEMBERS).map(|_| Outbox::new()).collect();
        let sinks: Vec<Sink> = outboxes
            .iter()
            .map(|o| Sink {
                outbox: o.clone(),
                session: session.clone(),
                soft_limit: 1 << 20,
                hard_limit: 4 << 20,
            })
            .collect();
        let row = row();

        c.bench_function("serialize the frame (once per message)", |b| {
            b.iter(|| message_frame(black_box(&row)))
        });
        let frames = [message_frame(&row)];
        c.bench_function("deliver to 100 outboxes and drain them", |b| {
            b.iter(|| {
                for sink in &sinks {
                    sink.write(black_box(&frames));
                }
                for outbox in &outboxes {
                    black_box(outbox.borrow_mut().next_chunk());
                }
            })
        });
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
