//! What a login's password check costs by the kind of account: unknown (the dummy argon2id hash),
//! argon2id, and a dialtone v1 bcrypt hash not yet re-hashed; each raw (`verify_password`) and as
//! login runs it (`check`, padded to the floor so the three cannot be told apart by timing).
//!
//! `cargo bench --bench password`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use dialtone::crypto::password::{
    V1_BCRYPT_COST, check, check_floor, hash_password, verify_password,
};

#[allow(clippy::expect_used)] // bench setup
fn bench(c: &mut Criterion) {
    let argon2 = hash_password("correct horse 1").expect("argon2 hash");
    let bcrypt_v1 = bcrypt::hash("correct horse 1", V1_BCRYPT_COST).expect("bcrypt hash");
    let mut g = c.benchmark_group("password");
    g.sample_size(20);
    g.bench_function("verify argon2id (wrong password)", |b| {
        b.iter(|| verify_password(black_box("wrong horse 1"), &argon2))
    });
    g.bench_function("verify bcrypt cost 10 (wrong password)", |b| {
        b.iter(|| verify_password(black_box("wrong horse 1"), &bcrypt_v1))
    });
    eprintln!("check floor: {:?}", check_floor());
    g.bench_function("check unknown user", |b| {
        b.iter(|| check(black_box("wrong horse 1"), None))
    });
    g.bench_function("check argon2id user", |b| {
        b.iter(|| check(black_box("wrong horse 1"), Some(&argon2)))
    });
    g.bench_function("check bcrypt v1 user", |b| {
        b.iter(|| check(black_box("wrong horse 1"), Some(&bcrypt_v1)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
