package journal

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestJournalRecordRoundTrip(t *testing.T) {
	ws := []Write{
		{Key: []byte("a\x00k"), Value: []byte("v1")},
		{Key: []byte("x123"), Del: true},
		{Key: []byte("e"), Value: nil},
	}
	b := AppendRecord(nil, 42, ws)
	if n := binary.LittleEndian.Uint32(b); int(n) != len(b)-8 {
		t.Fatalf("length %d, record %d bytes", n, len(b))
	}
	seq, got, err := decodeRecord(b[8:])
	if err != nil || seq != 42 || len(got) != 3 {
		t.Fatalf("decode: seq %d, %d writes, %v", seq, len(got), err)
	}
	if string(got[0].Key) != "a\x00k" || string(got[0].Value) != "v1" || got[0].Del ||
		string(got[1].Key) != "x123" || !got[1].Del || string(got[2].Key) != "e" || got[2].Del || len(got[2].Value) != 0 {
		t.Fatalf("decode: %+v", got)
	}
	for _, bad := range [][]byte{{}, {0x80}, {1, 9, 1, 'k'}, {1, Set, 5, 'k'}} {
		if _, _, err := decodeRecord(bad); err == nil {
			t.Errorf("decode %x: want an error", bad)
		}
	}
}

// A crash leaves the journal's last record short or with a bad checksum:
// never acknowledged (its fdatasync had not returned), it and what follows
// are ignored; the records before it are all read.
func TestReadJournalStopsAtTornRecord(t *testing.T) {
	for _, tc := range []struct {
		name string
		tear func(b []byte, last int) []byte // last: where the 4th record starts
	}{
		{"short", func(b []byte, _ int) []byte { return b[:len(b)-3] }},
		{"header only", func(b []byte, last int) []byte { return b[:last+8] }},
		{"partial header", func(b []byte, last int) []byte { return b[:last+5] }},
		{"checksum", func(b []byte, _ int) []byte { b[len(b)-1] ^= 0xff; return b }},
		{"zero length", func(b []byte, last int) []byte { return append(b[:last], 0, 0, 0, 0, 1, 2, 3, 4) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			var b []byte
			for seq := uint64(1); seq <= 3; seq++ {
				b = AppendRecord(b, seq, []Write{{Key: []byte{byte('a' + seq)}, Value: []byte("v")}})
			}
			last := len(b)
			b = AppendRecord(b, 4, []Write{{Key: []byte("d"), Value: []byte("torn")}})
			b = tc.tear(b, last)
			if err := os.WriteFile(filepath.Join(dir, FileName(1)), b, 0o600); err != nil {
				t.Fatal(err)
			}
			var seqs []uint64
			scan, err := Walk(dir, func(_ Pos, seq uint64, ws []Write) error {
				seqs = append(seqs, seq)
				return nil
			})
			if err != nil || scan.Top != 3 || len(seqs) != 3 {
				t.Fatalf("walkJournal: top %d, records %v, err %v; want 3 records", scan.Top, seqs, err)
			}
			// A torn tail: the newest file's last damage, nothing after it.
			if len(scan.Damages) != 1 || scan.Damages[0].Next != 0 || !scan.Damages[0].Newest || scan.Damages[0].After != 0 {
				t.Fatalf("damages %+v; want one torn tail", scan.Damages)
			}
		})
	}
}

// Resynchronising reads a damaged journal in time linear in its size.
// Random bytes with a plausible header every 16 bytes are read through
// (their bodies do not decode, no checksum is computed). When every 16
// bytes a header claims a 1 MiB record whose body decodes (a deletion
// whose key runs to its end, over the next headers) and only its checksum
// is wrong, checking them all would checksum about 190 GiB: the search
// stops at its budget and says so.
func TestJournalResyncBounded(t *testing.T) {
	for _, tc := range []struct {
		name      string
		length    uint32
		unscanned bool
	}{
		{"bodies that do not decode", 6, false},
		{"bodies that decode", 1 << 20, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			const size = 4 << 20
			junk := make([]byte, size)
			r := rand.New(rand.NewPCG(1, 2))
			for i := range junk {
				junk[i] = byte(r.IntN(256))
			}
			for p := 0; p+16 < len(junk); p += 16 {
				binary.LittleEndian.PutUint32(junk[p:], tc.length)
				junk[p+8] = 1 // seq 1: the window admits it
				if tc.length > 16 {
					junk[p+9] = Del
					binary.PutUvarint(junk[p+10:p+13], uint64(tc.length-5)) // 3 bytes
				}
			}
			if err := os.WriteFile(filepath.Join(dir, FileName(1)), junk, 0o600); err != nil {
				t.Fatal(err)
			}
			scan, err := Walk(dir, nil)
			if err != nil || scan.Records != 0 || len(scan.Damages) != 1 || scan.Damages[0].Next != 0 || scan.Damages[0].Unscanned != tc.unscanned {
				t.Fatalf("%d records, damages %+v, %v", scan.Records, scan.Damages, err)
			}
		})
	}
}

// BenchmarkJournalWalkDamaged reads a 4 MiB journal damaged at 10 %: the
// records before, the resynchronisation, the records after.
func BenchmarkJournalWalkDamaged(b *testing.B) {
	dir := b.TempDir()
	var f []byte
	for seq := uint64(1); len(f) < 4<<20; seq++ {
		f = AppendRecord(f, seq, []Write{{Key: []byte("account-key-0123456789"), Value: bytes.Repeat([]byte{byte(seq)}, 120)}})
	}
	f[len(f)/10] ^= 1
	if err := os.WriteFile(filepath.Join(dir, FileName(1)), f, 0o600); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(f)))
	for b.Loop() {
		scan, err := Walk(dir, nil)
		if err != nil || len(scan.Damages) != 1 || scan.Damages[0].After == 0 {
			b.Fatalf("%+v %v", scan.Damages, err)
		}
	}
}

// A valid record whose seq does not follow is damage like any other (not
// an error Open cannot get past): here a record written twice.
func TestJournalRecordOutOfSequence(t *testing.T) {
	dir := t.TempDir()
	var b []byte
	for _, seq := range []uint64{1, 2, 2, 3, 4} {
		b = AppendRecord(b, seq, []Write{{Key: []byte("k"), Value: []byte(strconv.FormatUint(seq, 10))}})
	}
	if err := os.WriteFile(filepath.Join(dir, FileName(1)), b, 0o600); err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	scan, err := Walk(dir, func(_ Pos, seq uint64, _ []Write) error { seqs = append(seqs, seq); return nil })
	if err != nil || len(seqs) != 4 || len(scan.Damages) != 1 || scan.Damages[0].After != 2 || scan.Damages[0].Next != 3 ||
		!strings.Contains(scan.Damages[0].Why, "out of sequence") {
		t.Fatalf("records %v, damages %+v, %v", seqs, scan.Damages, err)
	}
}
