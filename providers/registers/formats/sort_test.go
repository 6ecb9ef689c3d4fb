package formats

import (
	"context"
	"encoding/csv"
	"os"
	"slices"
	"strings"
	"testing"
)

// TestSortCopyStable: the sorted copy orders rows by key, keeps file order
// among equal keys through runs and merge rounds, keeps each row's line,
// and leaves out (and reports) rows without a valid key.
func TestSortCopyStable(t *testing.T) {
	defer func(b, f int) { sortBudget, maxFanIn = b, f }(sortBudget, maxFanIn)
	sortBudget, maxFanIn = 40, 2
	in := "id,v\nb,1\na,2\nb,3\n,bad\na,4\nc,5\nb,6\na,7\n"
	var bad []int64
	e := newEmitter(context.Background(), &sliceSink{}, Options{}, &source{})
	e.opt.Bad = func(_ string, line int64, _ error) { bad = append(bad, line) }
	tab, err := newTable("x.csv", strings.NewReader(in), ',', e.badFor("x.csv"))
	if err != nil {
		t.Fatal(err)
	}
	d := &tempDir{parent: t.TempDir()}
	defer d.Close()
	key := func(v string) (string, bool, bool) { return v, v != "", false }
	path, err := d.sortCopy(e, tab, "id", key)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rows {
		got = append(got, strings.Join(r, ","))
	}
	want := []string{"iapd:line,id,v", "3,a,2", "6,a,4", "9,a,7", "2,b,1", "4,b,3", "8,b,6", "7,c,5"}
	if !slices.Equal(got, want) {
		t.Errorf("sorted copy\n got %v\nwant %v", got, want)
	}
	if !slices.Equal(bad, []int64{5}) {
		t.Errorf("bad lines %v, want [5]", bad)
	}
	// Only the final copy is left (runs and rounds removed).
	if ents, _ := os.ReadDir(d.dir); len(ents) != 1 {
		t.Errorf("temporary files left: %d", len(ents))
	}
}
