//! Splitting one channel's committed rows into bus payloads that fit `MAX_BUS_PAYLOAD`, sized by
//! what serde_json will actually write.

use super::MAX_BUS_PAYLOAD;
use crate::actors::db::CommittedMessage;
use crate::db::models::MessageRow;

/// One channel's committed rows in bus-sized parts, in order (a body is at most 16 KiB, and a
/// group commit may hold hundreds of one channel's messages).
pub(super) fn payload_chunks(messages: &[CommittedMessage]) -> Vec<Vec<MessageRow>> {
    // JSON field names, ids, timestamps and the seq: all short and escape-free.
    const ROW_OVERHEAD: usize = 512;
    let mut chunks = Vec::new();
    let mut chunk: Vec<MessageRow> = Vec::new();
    let mut size = 0;
    for m in messages {
        let row = json_str_len(&m.row.body)
            + json_str_len(&m.row.sender_name_enc)
            + m.row.client_message_id.as_deref().map_or(0, json_str_len)
            + ROW_OVERHEAD;
        if !chunk.is_empty() && size + row > MAX_BUS_PAYLOAD - 4096 {
            chunks.push(std::mem::take(&mut chunk));
            size = 0;
        }
        size += row;
        chunk.push(m.row.clone());
    }
    if !chunk.is_empty() {
        chunks.push(chunk);
    }
    chunks
}

/// The bytes `s` takes as a JSON string as serde_json writes it (quotes included): a body of
/// control characters grows sixfold, and an estimate that ignored it would build payloads the
/// bus refuses.
fn json_str_len(s: &str) -> usize {
    2 + s
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::types::Time;

    fn row(body: &str) -> CommittedMessage {
        CommittedMessage {
            row: MessageRow {
                id: uuid::Uuid::now_v7().to_string(),
                channel_id: uuid::Uuid::now_v7().to_string(),
                sender_id: uuid::Uuid::now_v7().to_string(),
                sender_name_enc: "bmFtZQ==".into(),
                body: body.to_owned(),
                sent_at: Time::now(),
                client_message_id: Some("x".repeat(128)),
                seq: i64::MAX,
            },
            origin: None,
        }
    }

    #[test]
    fn the_length_is_what_serde_json_writes() {
        for s in [
            "",
            "plain",
            "quote\" back\\slash",
            "\n\t\r\u{8}\u{c}",
            "\u{1}\u{1f}",
            "é😀\u{7f}/",
        ] {
            assert_eq!(
                json_str_len(s),
                serde_json::to_string(s).unwrap().len(),
                "{s:?}"
            );
        }
    }

    #[test]
    fn bodies_that_escape_sixfold_still_make_payloads_the_bus_takes() {
        let hostile = "\u{1}".repeat(16 * 1024);
        for body in [hostile.as_str(), &"A".repeat(16 * 1024)] {
            let messages: Vec<CommittedMessage> = (0..200).map(|_| row(body)).collect();
            let chunks = payload_chunks(&messages);
            assert_eq!(chunks.iter().map(Vec::len).sum::<usize>(), 200);
            for chunk in chunks {
                let json = serde_json::to_vec(&chunk).unwrap();
                assert!(json.len() <= MAX_BUS_PAYLOAD - 4096, "{} bytes", json.len());
            }
        }
    }
}
