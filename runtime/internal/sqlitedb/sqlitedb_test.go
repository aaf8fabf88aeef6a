package sqlitedb

import (
	"os"
	"path/filepath"
	"testing"
)

// A path with the characters a SQLite URI gives meaning to ('?' query, '#' fragment,
// '%' escapes) opens exactly that file, not a shorter name.
func TestOpenEscapesPath(t *testing.T) {
	for _, name := range []string{"a#b.db", "a?mode=ro.db", "100%25.db", "x y&z.db"} {
		dir := filepath.Join(t.TempDir(), "data#1?x=%41")
		path := filepath.Join(dir, name)
		db, err := Open(path, "CREATE TABLE IF NOT EXISTS t (x INTEGER)")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := db.Exec("INSERT INTO t VALUES (1)"); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		db.Close()
		if st, err := os.Stat(path); err != nil || st.Size() == 0 {
			t.Errorf("%s: the database is not at %s: %v", name, path, err)
		}
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if n := e.Name(); n != name && n != name+"-wal" && n != name+"-shm" {
				t.Errorf("%s: stray file %s in %s", name, n, dir)
			}
		}
	}
}
