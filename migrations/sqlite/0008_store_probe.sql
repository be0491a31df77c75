-- One row the store circuit rewrites to learn that a full disk has room again
-- (`Store::probe_write`): a real write, through the WAL, synced like a client's.
CREATE TABLE store_probe (
    id INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    at BIGINT  NOT NULL
);
