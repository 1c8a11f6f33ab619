package finder

import (
	"slices"
	"testing"
	"unicode"
)

func TestFold(t *testing.T) {
	tests := []struct {
		in     string
		want   []string
		german []string // the ä ö ü -> ae oe ue spelling; nil means the same as want
		ok     bool
	}{
		{in: "Ada", want: []string{"ada"}, ok: true},
		{in: "José", want: []string{"jose"}, ok: true},
		{in: "Jose\u0301", want: []string{"jose"}, ok: true}, // decomposed é
		{in: "Straße", want: []string{"strasse"}, ok: true},
		{in: "STRAẞE", want: []string{"strasse"}, ok: true},
		{in: "Søren", want: []string{"soren"}, ok: true},
		{in: "Ærø", want: []string{"aero"}, ok: true},
		{in: "Łukasz Żółć", want: []string{"lukasz", "zolc"}, ok: true},
		{in: "Peña", want: []string{"pena"}, ok: true},
		{in: "François", want: []string{"francois"}, ok: true},
		{in: "Müller", want: []string{"muller"}, german: []string{"mueller"}, ok: true},
		{in: "Mu\u0308ller", want: []string{"muller"}, german: []string{"mueller"}, ok: true},
		{in: "Jörg Ärger", want: []string{"jorg", "arger"}, german: []string{"joerg", "aerger"}, ok: true},
		{in: "Işıl", want: []string{"isil"}, ok: true}, // Turkish dotless ı
		{in: "İlker", want: []string{"ilker"}, ok: true},
		{in: "Đorđević", want: []string{"dordevic"}, ok: true},
		{in: "Þórður", want: []string{"thordur"}, ok: true},
		{in: "Œdipe", want: []string{"oedipe"}, ok: true},
		{in: "Nguyễn Thị Ánh", want: []string{"nguyen", "thi", "anh"}, ok: true},
		{in: "Ștefan Țurcan", want: []string{"stefan", "turcan"}, ok: true},
		{in: "Əliyev", want: []string{"eliyev"}, ok: true},
		{in: "O'Brien", want: []string{"obrien"}, ok: true},
		{in: "O’Brien", want: []string{"obrien"}, ok: true},
		{in: "D`Angelo", want: []string{"dangelo"}, ok: true},
		{in: "Smith-Jones", want: []string{"smith", "jones"}, ok: true},
		{in: "van der Berg", want: []string{"van", "der", "berg"}, ok: true},
		{in: "Jean–Paul", want: []string{"jean", "paul"}, ok: true}, // en dash
		{in: "B.", want: []string{"b"}, ok: true},
		{in: "St.John", want: []string{"st", "john"}, ok: true},
		{in: "Louis XIV 2nd", want: []string{"louis", "xiv", "2nd"}, ok: true},
		{in: "", want: nil, ok: true},
		{in: " -'. ", want: nil, ok: true},
		{in: "Иван", ok: false},
		{in: "Σοφία", ok: false},
		{in: "王", ok: false},
		{in: "Ada 王", ok: false}, // one unfoldable letter spoils the part
		{in: "Ada٣", ok: false},  // a non-ASCII digit
	}
	for _, tt := range tests {
		got, ok := Fold(tt.in)
		if ok != tt.ok || !slices.Equal(got, tt.want) {
			t.Errorf("Fold(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
		german := tt.german
		if german == nil {
			german = tt.want
		}
		if got, ok := fold(tt.in, true); ok != tt.ok || !slices.Equal(got, german) {
			t.Errorf("fold(%q, umlauts) = %q, %v; want %q, %v", tt.in, got, ok, german, tt.ok)
		}
	}
}

// Every letter of Latin-1 Supplement, Latin Extended-A and the Vietnamese
// block folds, and every rune that folds at all gives lower-case ASCII
// letters only, so the output is always a valid dot-string atom.
func TestFoldCoverage(t *testing.T) {
	for _, r := range []struct{ lo, hi rune }{{0xC0, 0x17F}, {0x1EA0, 0x1EF9}} {
		for c := r.lo; c <= r.hi; c++ {
			if unicode.IsLetter(c) && latin(c) == "" {
				t.Errorf("latin(%q U+%04X) has no folding", c, c)
			}
		}
	}
	for c := rune(0x80); c < 0x3000; c++ {
		s := latin(c)
		for i := 0; i < len(s); i++ {
			if s[i] < 'a' || s[i] > 'z' {
				t.Fatalf("latin(%q U+%04X) = %q, not lower-case ASCII letters", c, c, s)
			}
		}
		if s != "" && !unicode.IsLetter(c) {
			t.Errorf("latin(%q U+%04X) = %q for a non-letter", c, c, s)
		}
	}
}
