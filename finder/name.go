package finder

import "strings"

// Person is a name split into the parts that address patterns use. The parts
// are as written (trimmed, single-spaced); folding to ASCII happens when
// candidates are made. Any part may be empty.
type Person struct {
	First  string // the first given name: "Ada", "Mary Ann" when given as a first_name column
	Middle string // further given names and initials: "B.", "María"
	Last   string // the surname with its particles: "Lovelace", "van der Berg", "Smith-Jones"
}

// SplitName splits one full-name cell.
//
//   - "Last, First Middle…" when the name has a comma, which is the way to
//     give a double or multi-word surname unambiguously
//     ("García López, José María").
//   - Otherwise "First Middle… Last": the first word is the first name, the
//     last word the surname, the words between are middle names. Particles
//     before the last word (van, von, der, de, la, da, di, du, del, al, bin…)
//     belong to the surname: "Vincent van der Berg" has surname
//     "van der Berg". "José María García López" is therefore first José,
//     middle "María García", surname López: word order alone cannot tell a
//     Spanish double surname from a middle name.
//   - Titles in front (Dr., Prof., Mr., Mrs., Ms., Sir…) and suffixes at the
//     end or after a comma (Jr., Sr., II, III, PhD, MD, MBA, Esq.) are
//     dropped, as are nicknames in quotes or parentheses; a title or suffix
//     that is the only word is kept as the name.
//   - A single word is a first name ("Cher"): patterns that need a surname
//     give no candidate for it.
func SplitName(full string) Person {
	var parts [][]string
	for _, p := range strings.Split(full, ",") {
		words := nameWords(p)
		if len(words) > 0 && !allSuffixes(words) {
			parts = append(parts, words)
		}
	}
	switch len(parts) {
	case 0:
		// Nothing but suffixes (or nothing): keep what was written.
		return splitOrdered(nameWords(strings.ReplaceAll(full, ",", " ")))
	case 1:
		return splitOrdered(parts[0])
	}
	last := stripSuffixes(parts[0])
	var given []string
	for _, p := range parts[1:] {
		given = append(given, p...)
	}
	given = stripTitles(given)
	p := Person{Last: strings.Join(last, " ")}
	if len(given) > 0 {
		p.First = given[0]
		p.Middle = strings.Join(given[1:], " ")
	}
	return p
}

// PersonFromParts builds a Person from separate first-name and last-name
// cells. The first cell may hold middle names or initials ("Ada B."): its
// first word is the first name, the rest are middle names. A title in front
// of the first name and a suffix after the surname are dropped. The surname
// is kept whole ("García López", "van der Berg").
func PersonFromParts(first, last string) Person {
	given := stripTitles(nameWords(first))
	p := Person{Last: strings.Join(stripSuffixes(nameWords(last)), " ")}
	if len(given) > 0 {
		p.First = given[0]
		p.Middle = strings.Join(given[1:], " ")
	}
	return p
}

// splitOrdered splits words in "First Middle… Last" order.
func splitOrdered(words []string) Person {
	words = stripSuffixes(stripTitles(words))
	switch len(words) {
	case 0:
		return Person{}
	case 1:
		return Person{First: words[0]}
	}
	start := len(words) - 1
	for start > 1 && isParticle(words[start-1]) {
		start--
	}
	return Person{
		First:  words[0],
		Middle: strings.Join(words[1:start], " "),
		Last:   strings.Join(words[start:], " "),
	}
}

// nameWords splits s at white space and drops nicknames: a word in quotes or
// parentheses ("Robert \"Bob\" Smith", "Robert (Bob) Smith").
func nameWords(s string) []string {
	var out []string
	for _, w := range strings.Fields(s) {
		if len(w) >= 2 && (w[0] == '"' && w[len(w)-1] == '"' || w[0] == '(' && w[len(w)-1] == ')') {
			continue
		}
		out = append(out, w)
	}
	return out
}

// stripTitles drops titles from the front, keeping at least one word.
func stripTitles(words []string) []string {
	for len(words) > 1 && isTitle(words[0]) {
		words = words[1:]
	}
	return words
}

// stripSuffixes drops suffixes from the end, keeping at least one word.
func stripSuffixes(words []string) []string {
	for len(words) > 1 && isSuffix(words[len(words)-1]) {
		words = words[:len(words)-1]
	}
	return words
}

func allSuffixes(words []string) bool {
	for _, w := range words {
		if !isSuffix(w) {
			return false
		}
	}
	return true
}

// key is w lower-cased without dots, so "Ph.D." and "PhD" compare equal.
func key(w string) string { return strings.ToLower(strings.ReplaceAll(w, ".", "")) }

func isTitle(w string) bool {
	switch key(w) {
	case "mr", "mrs", "ms", "mx", "miss", "dr", "prof", "sir", "dame", "rev",
		"herr", "frau", "mme", "mlle", "sr", "sra", "srta":
		return true
	}
	return false
}

// isSuffix lists generational and academic suffixes. Two-letter degrees that
// are also surnames (Ma, Ba) are deliberately absent.
func isSuffix(w string) bool {
	switch key(w) {
	case "jr", "sr", "ii", "iii", "iv", "phd", "md", "mba", "esq", "dds",
		"cpa", "jd", "msc", "bsc", "mphil", "dphil":
		return true
	}
	return false
}

// isParticle lists the lower-case-in-practice words that join the following
// word into one surname.
func isParticle(w string) bool {
	switch strings.ToLower(w) {
	case "van", "von", "der", "den", "de", "del", "della", "di", "da", "do",
		"dos", "das", "du", "la", "le", "ter", "ten", "zu", "af", "av",
		"bin", "binti", "bint", "al", "el", "ibn", "st", "st.":
		return true
	}
	return false
}
