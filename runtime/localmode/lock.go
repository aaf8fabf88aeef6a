package localmode

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// LockFile is the file a process holds a lock on while it uses a data directory.
const LockFile = ".visionstack.lock"

// ErrInUse: another process uses the data directory.
var ErrInUse = errors.New("data directory in use")

// lockDir makes this process the one writer of dir: an exclusive lock (flock) on
// its LockFile, which the kernel drops when the process ends, however it ends. The
// local buckets guard their conditional writes within a process only, so a second
// process writing the same directory could overwrite what the first made.
func lockDir(dir string) (release func() error, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			who := "another process"
			if pid, err := strconv.Atoi(strings.TrimSpace(string(holder))); err == nil {
				who = fmt.Sprintf("process %d", pid)
			}
			return nil, fmt.Errorf("%w: %s uses %s (visionstack run or serve): wait for it to end, stop it, or give this one another directory (--out, --data)", ErrInUse, who, dir)
		}
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return f.Close, nil // closing the file drops the lock
}
