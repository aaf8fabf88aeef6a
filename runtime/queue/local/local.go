// Package local is a durable at-least-once queue in a SQLite file: a message is a
// row; a delivery leases it for the ack deadline; an ack deletes it; a failure puts
// it back with exponential backoff; after MaxAttempts it moves to the topic's
// dead-letter topic. A process that dies mid-delivery loses only its lease: the
// message comes back when the lease runs out.
//
// Each topic has one implicit subscription of the same name; the dead-letter topic
// of T is T + DeadLetterSuffix.
package local

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/visionstack/visionstack/runtime/internal/sqlitedb"
	"github.com/visionstack/visionstack/runtime/queue"
)

// DeadLetterSuffix names a topic's dead-letter topic.
const DeadLetterSuffix = ".dead-letter"

const schema = `
CREATE TABLE IF NOT EXISTS messages (
	id           INTEGER PRIMARY KEY AUTOINCREMENT,
	topic        TEXT NOT NULL,
	data         BLOB NOT NULL,
	attrs        TEXT NOT NULL,
	attempts     INTEGER NOT NULL DEFAULT 0,
	available_at INTEGER NOT NULL,
	lease        TEXT NOT NULL DEFAULT '',
	published    INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_ready ON messages(topic, available_at, id);
`

// Options tune delivery; zero values take the defaults shown.
type Options struct {
	MaxAttempts int           // before dead-lettering (5)
	MinBackoff  time.Duration // after the first failure (1s)
	MaxBackoff  time.Duration // cap (60s)
	AckDeadline time.Duration // lease per delivery, extended while the handler runs (60s)
	Workers     int           // concurrent deliveries per Receive (1)
	Poll        time.Duration // idle polling interval (100ms)
	Logger      *slog.Logger
}

func (o *Options) defaults() {
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 5
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = time.Second
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(60*time.Second, o.MinBackoff)
	}
	if o.AckDeadline <= 0 {
		o.AckDeadline = 60 * time.Second
	}
	if o.Workers <= 0 {
		o.Workers = 1
	}
	if o.Poll <= 0 {
		o.Poll = 100 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Queue is a queue.Queue on SQLite.
type Queue struct {
	db     *sql.DB
	opts   Options
	wake   chan struct{} // nudged on publish so idle receivers in this process wake up
	mu     sync.Mutex
	closed bool
}

var _ queue.Queue = (*Queue)(nil)

// Open opens or creates the queue database at path.
func Open(path string, opts Options) (*Queue, error) {
	opts.defaults()
	db, err := sqlitedb.Open(path, schema)
	if err != nil {
		return nil, fmt.Errorf("local queue: %w", err)
	}
	return &Queue{db: db, opts: opts, wake: make(chan struct{}, 1)}, nil
}

// Close closes the database; leased messages come back after their lease.
func (q *Queue) Close() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil
	}
	q.closed = true
	return q.db.Close()
}

// Publish stores a message durably before returning.
func (q *Queue) Publish(ctx context.Context, topic string, data []byte, attrs map[string]string) (string, error) {
	if topic == "" {
		return "", errors.New("publish: empty topic")
	}
	a, err := json.Marshal(attrs)
	if err != nil {
		return "", fmt.Errorf("publish to %s: %w", topic, err)
	}
	now := time.Now().UnixNano()
	res, err := q.db.ExecContext(ctx, `INSERT INTO messages(topic, data, attrs, available_at, published) VALUES(?, ?, ?, ?, ?)`,
		topic, data, string(a), now, now)
	if err != nil {
		return "", fmt.Errorf("publish to %s: %w", topic, err)
	}
	id, _ := res.LastInsertId()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return strconv.FormatInt(id, 10), nil
}

// Receive delivers messages of subscription (= topic) to h until ctx ends.
func (q *Queue) Receive(ctx context.Context, subscription string, h queue.Handler) error {
	return q.receive(ctx, subscription, h, false)
}

// Drain delivers messages of subscription to h until none is left for it, counting
// those leased elsewhere or waiting for a retry; dead-lettered ones do not count.
func (q *Queue) Drain(ctx context.Context, subscription string, h queue.Handler) error {
	return q.receive(ctx, subscription, h, true)
}

var _ queue.Sweeper = (*Queue)(nil)

// Sweep hands f each message of subscription that no delivery holds now.
func (q *Queue) Sweep(ctx context.Context, subscription string, f func(context.Context, *queue.Message) bool) (int, error) {
	rows, err := q.db.QueryContext(ctx, `SELECT id, data, attrs, attempts FROM messages WHERE topic = ? AND (lease = '' OR available_at <= ?) ORDER BY id`,
		subscription, time.Now().UnixNano())
	if err != nil {
		return 0, fmt.Errorf("sweep %s: %w", subscription, err)
	}
	var msgs []queue.Message
	for rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
			rows.Close()
			return 0, fmt.Errorf("sweep %s: %w", subscription, err)
		}
		msgs = append(msgs, m)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("sweep %s: %w", subscription, err)
	}
	for i := range msgs {
		if !f(ctx, &msgs[i]) {
			continue
		}
		if _, err := q.db.ExecContext(ctx, `DELETE FROM messages WHERE id = ?`, msgs[i].ID); err != nil {
			return i + 1, fmt.Errorf("sweep %s: remove %s: %w", subscription, msgs[i].ID, err)
		}
	}
	return len(msgs), nil
}

// Pending counts the messages of a topic that still await a successful delivery.
func (q *Queue) Pending(ctx context.Context, topic string) (int, error) {
	var n int
	err := q.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM messages WHERE topic = ?`, topic).Scan(&n)
	return n, err
}

// Messages returns a topic's messages without leasing them (for inspection and tests).
func (q *Queue) Messages(ctx context.Context, topic string) ([]queue.Message, error) {
	rows, err := q.db.QueryContext(ctx, `SELECT id, data, attrs, attempts FROM messages WHERE topic = ? ORDER BY id`, topic)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []queue.Message
	for rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

func (q *Queue) receive(ctx context.Context, topic string, h queue.Handler, untilEmpty bool) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	for range q.opts.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := q.worker(ctx, topic, h, untilEmpty); err != nil {
				errOnce.Do(func() { firstErr = err; cancel() })
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	if untilEmpty {
		return nil
	}
	return ctx.Err()
}

// errEmpty ends a draining worker.
var errEmpty = errors.New("empty")

func (q *Queue) worker(ctx context.Context, topic string, h queue.Handler, untilEmpty bool) error {
	for ctx.Err() == nil {
		m, token, err := q.lease(ctx, topic)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("receive %s: %w", topic, err)
		}
		if m == nil {
			if untilEmpty {
				n, err := q.Pending(ctx, topic)
				if err != nil {
					return fmt.Errorf("receive %s: %w", topic, err)
				}
				if n == 0 {
					return nil
				}
			}
			select {
			case <-ctx.Done():
			case <-q.wake:
			case <-time.After(q.opts.Poll):
			}
			continue
		}
		if m.DeliveryAttempt > q.opts.MaxAttempts && !strings.HasSuffix(topic, DeadLetterSuffix) {
			// Every earlier delivery ended without an outcome: the handler crashed the
			// process (or it was killed) each time. Deliver it again and a poison
			// message loops forever.
			q.deadLetter(ctx, topic, m, token, fmt.Errorf("delivered %d times without an outcome: the process died during each (a crash on this message?)", m.DeliveryAttempt-1))
			continue
		}
		q.deliver(ctx, topic, m, token, h)
	}
	return nil
}

// deadLetter moves a leased message to topic's dead-letter topic.
func (q *Queue) deadLetter(ctx context.Context, topic string, m *queue.Message, token string, cause error) {
	log := m.Logger(q.opts.Logger).With("topic", topic, "messageId", m.ID, "deliveryAttempt", m.DeliveryAttempt)
	log.Warn("dead-lettering message", "err", cause)
	a, _ := json.Marshal(queue.DeadLetterAttributes(m, cause, topic))
	_, err := q.db.ExecContext(context.WithoutCancel(ctx), `UPDATE messages SET topic = ?, attrs = ?, attempts = 0, available_at = ?, lease = '' WHERE id = ? AND lease = ?`,
		topic+DeadLetterSuffix, string(a), time.Now().UnixNano(), m.ID, token)
	if err != nil {
		log.Error("dead-lettering failed; the message will be delivered again", "err", err)
	}
}

func (q *Queue) lease(ctx context.Context, topic string) (*queue.Message, string, error) {
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	token := hex.EncodeToString(rnd[:])
	now := time.Now()
	row := q.db.QueryRowContext(ctx, `
		UPDATE messages SET attempts = attempts + 1, available_at = ?, lease = ?
		WHERE id = (SELECT id FROM messages WHERE topic = ? AND available_at <= ? ORDER BY available_at, id LIMIT 1)
		RETURNING id, data, attrs, attempts`,
		now.Add(q.opts.AckDeadline).UnixNano(), token, topic, now.UnixNano())
	m, err := scanMessage(row)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", err
	}
	return &m, token, nil
}

func scanMessage(r interface{ Scan(...any) error }) (queue.Message, error) {
	var (
		id       int64
		m        queue.Message
		attrs    string
		attempts int
	)
	if err := r.Scan(&id, &m.Data, &attrs, &attempts); err != nil {
		return m, err
	}
	if err := json.Unmarshal([]byte(attrs), &m.Attributes); err != nil {
		return m, fmt.Errorf("message %d: corrupt attributes: %w", id, err)
	}
	m.ID, m.DeliveryAttempt = strconv.FormatInt(id, 10), attempts
	return m, nil
}

// deliver runs h, keeps the lease alive meanwhile, then acks, retries or dead-letters.
// Bookkeeping uses a fresh context so a cancelled Receive still records the outcome.
func (q *Queue) deliver(ctx context.Context, topic string, m *queue.Message, token string, h queue.Handler) {
	stop := make(chan struct{})
	var ext sync.WaitGroup
	ext.Add(1)
	go func() { // extend the lease while the handler runs, as Pub/Sub clients do
		defer ext.Done()
		t := time.NewTicker(q.opts.AckDeadline / 3)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				_, _ = q.db.Exec(`UPDATE messages SET available_at = ? WHERE id = ? AND lease = ?`,
					time.Now().Add(q.opts.AckDeadline).UnixNano(), m.ID, token)
			}
		}
	}()
	err := safeHandle(ctx, h, m)
	close(stop)
	ext.Wait()

	bg := context.WithoutCancel(ctx)
	log := m.Logger(q.opts.Logger).With("topic", topic, "messageId", m.ID, "deliveryAttempt", m.DeliveryAttempt)
	switch {
	case err == nil:
		_, err = q.db.ExecContext(bg, `DELETE FROM messages WHERE id = ? AND lease = ?`, m.ID, token)
		if err != nil {
			log.Error("ack failed; the message will be delivered again", "err", err)
		}
	case queue.IsPermanent(err) || (m.DeliveryAttempt >= q.opts.MaxAttempts && !strings.HasSuffix(topic, DeadLetterSuffix)):
		q.deadLetter(bg, topic, m, token, err)
	default:
		delay := q.backoff(m.DeliveryAttempt)
		log.Info("delivery failed; retrying", "err", err, "retryIn", delay.String())
		_, nerr := q.db.ExecContext(bg, `UPDATE messages SET available_at = ?, lease = '' WHERE id = ? AND lease = ?`,
			time.Now().Add(delay).UnixNano(), m.ID, token)
		if nerr != nil {
			log.Error("nack failed; the message comes back after its lease", "err", nerr)
		}
	}
}

// safeHandle turns a handler panic into a retryable error instead of killing workers.
func safeHandle(ctx context.Context, h queue.Handler, m *queue.Message) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panicked: %v", r)
		}
	}()
	return h(ctx, m)
}

// backoff is exponential from MinBackoff, capped at MaxBackoff, with up to 20% jitter.
func (q *Queue) backoff(attempt int) time.Duration {
	d := float64(q.opts.MinBackoff) * math.Pow(2, float64(attempt-1))
	d = math.Min(d, float64(q.opts.MaxBackoff))
	return time.Duration(d * (1 + 0.2*mrand.Float64()))
}
