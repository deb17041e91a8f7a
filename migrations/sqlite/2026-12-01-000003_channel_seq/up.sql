-- Per-channel sequence numbers: a gap-free cursor. `channels.last_seq` is the counter the group
-- commit bumps inside the transaction that inserts the messages (SQLite has one writer at a time),
-- so per channel seq order is commit order and a rolled-back batch leaves no gap.
ALTER TABLE channels ADD COLUMN last_seq BIGINT NOT NULL DEFAULT 0;
-- SQLite cannot add a NOT NULL column without a default; the backfill below replaces every 0, and
-- the unique index refuses any row left at 0 twice in one channel.
ALTER TABLE channel_messages ADD COLUMN seq BIGINT NOT NULL DEFAULT 0;

-- Existing rows are numbered in the order history already shows them: (sent_at, id).
UPDATE channel_messages SET seq = numbered.seq
FROM (
    SELECT id, row_number() OVER (PARTITION BY channel_id ORDER BY sent_at, id) AS seq
    FROM channel_messages
) AS numbered
WHERE channel_messages.id = numbered.id;

UPDATE channels SET last_seq = counted.last_seq
FROM (
    SELECT channel_id, max(seq) AS last_seq FROM channel_messages GROUP BY channel_id
) AS counted
WHERE channels.id = counted.channel_id;

CREATE UNIQUE INDEX channel_messages_channel_seq ON channel_messages (channel_id, seq);
