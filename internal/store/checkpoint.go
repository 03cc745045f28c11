package store

import (
	"context"
	"log/slog"
)

// WAL checkpoints run in the background. SQLite's automatic checkpoint runs
// inside the commit that crosses its threshold (1,000 pages): on the
// gateway that is a receipt's commit, so every ~140th request waited about
// 10 ms for pages to be copied into the database file and synced. Instead
// the writer never checkpoints (wal_autocheckpoint=0) and the committer asks
// a goroutine with its own connection to run a PASSIVE checkpoint every
// checkpointEvery commits. A passive checkpoint takes no writer lock, so
// receipts keep committing while it runs, and it copies the pages into the
// database file off the requests' path.
//
// SQLite starts the WAL over only after a checkpoint that left nothing to
// copy, and under steady commits a background one never quite gets there
// (frames arrive while it copies), so the file grows. Once it holds
// walFrameLimit frames, the committer runs one more checkpoint itself,
// between two commits: it has only the frames of the last moments to copy
// (2–3 ms with its syncs on a slow disk, once every couple of thousand
// receipts), and the next commit starts the WAL over.
//
// Durability is unchanged: a receipt is in the WAL, synced unless the
// operator chose process durability, before SaveReceipt returns.

// checkpointEvery commits (each a few pages) between background
// checkpoints; walFrameLimit frames (16 MiB of 4 KiB pages) before the
// committer finishes one.
const (
	checkpointEvery = 128
	walFrameLimit   = 4096
)

// checkpointer runs until Close, checkpointing when the committer asks.
func (s *Store) checkpointer() {
	defer close(s.ckptDone)
	for {
		select {
		case <-s.ckptKick:
		case <-s.closing:
			return
		}
		var busy, walPages, moved int
		err := s.ckpt.QueryRowContext(context.Background(), "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &walPages, &moved)
		if err != nil {
			s.log.Warn("WAL checkpoint failed; the next one retries", "err", err)
			continue
		}
		if walPages >= s.walFrames {
			s.ckptFinish.Store(true)
		}
	}
}

// committedBatch is called by the committer after each commit.
func (s *Store) committedBatch() {
	if s.ckpt == nil {
		return
	}
	if s.ckptFinish.Swap(false) {
		// The WAL is long: finish the background checkpoint here, where no
		// commit runs, so that the next one starts the WAL over.
		if _, err := s.write.ExecContext(context.Background(), "PRAGMA wal_checkpoint(PASSIVE)"); err != nil {
			s.log.Warn("WAL checkpoint failed; the next one retries", "err", err)
		}
	}
	if s.sinceCkpt++; s.sinceCkpt < checkpointEvery {
		return
	}
	s.sinceCkpt = 0
	select {
	case s.ckptKick <- struct{}{}:
	default: // one is running; it will see these pages too
	}
}

// WithLogger sets where the store reports trouble it recovers from by
// itself (a failed background checkpoint). The default discards.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }
