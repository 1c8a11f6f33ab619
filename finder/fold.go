package finder

import (
	"strings"
	"unicode"
)

// Fold turns one name part into the lower-case ASCII words a mail system
// would use for it: accents are removed (é -> e, ñ -> n, ı -> i), letters
// without a plain form are spelt out (ß -> ss, æ -> ae, ø -> o, ł -> l,
// đ -> d, þ -> th), apostrophes are dropped (O'Brien -> obrien), and white
// space, hyphens, dots and other punctuation separate words
// ("van der Berg" -> van, der, berg; "Smith-Jones" -> smith, jones). Digits
// are kept. Text in decomposed form (e followed by a combining accent) folds
// like the precomposed letter.
//
// ok is false when s has a letter or digit with no such folding: a name in
// Cyrillic, Greek, Chinese, Arabic… script gives no words rather than a wrong
// guess. A part with no letters at all gives no words and ok true.
func Fold(s string) (words []string, ok bool) { return fold(s, false) }

// fold is Fold; with umlauts, ä ö ü take the German spelling ae oe ue.
func fold(s string, umlauts bool) ([]string, bool) {
	var words []string
	var w strings.Builder
	end := func() {
		if w.Len() > 0 {
			words = append(words, w.String())
			w.Reset()
		}
	}
	var prev rune // the last letter written, for a combining diaeresis
	for _, r := range s {
		switch {
		case r < 0x80:
			switch {
			case 'a' <= r && r <= 'z', '0' <= r && r <= '9':
				w.WriteRune(r)
			case 'A' <= r && r <= 'Z':
				r += 'a' - 'A'
				w.WriteRune(r)
			case r == '\'' || r == '`':
				continue // O'Brien is one word
			default:
				end()
			}
		case isApostrophe(r):
			continue
		case unicode.Is(unicode.Mn, r):
			// A combining mark of decomposed text: drop it, except that a
			// diaeresis after a, o or u is an umlaut.
			if umlauts && r == '\u0308' && (prev == 'a' || prev == 'o' || prev == 'u') {
				w.WriteByte('e')
				prev = 'e'
			}
			continue
		default:
			if umlauts {
				switch r {
				case 'ä', 'Ä':
					w.WriteString("ae")
					prev = 'e'
					continue
				case 'ö', 'Ö':
					w.WriteString("oe")
					prev = 'e'
					continue
				case 'ü', 'Ü':
					w.WriteString("ue")
					prev = 'e'
					continue
				}
			}
			if t := latin(r); t != "" {
				w.WriteString(t)
				r = rune(t[len(t)-1])
			} else if unicode.IsLetter(r) || unicode.IsNumber(r) {
				return nil, false
			} else {
				end()
			}
		}
		prev = r
	}
	end()
	return words, true
}

// isApostrophe reports the non-ASCII characters people type for an
// apostrophe in a name (O’Brien, Ngʼombe).
func isApostrophe(r rune) bool {
	switch r {
	case '\u2019', '\u2018', '\u02bc', '\u02bb', '\u00b4', '\u2032':
		return true
	}
	return false
}

// latin returns the lower-case ASCII spelling of a Latin letter with
// diacritics (both cases), or "" for any other rune. The letters with a
// canonical decomposition are listed by their base letter; the others
// (stroked, ligatures, dotless i, eth, thorn, African and Azerbaijani letters)
// by their usual spelling.
func latin(r rune) string {
	switch r {
	case 'À', 'Á', 'Â', 'Ã', 'Ä', 'Å', 'à', 'á', 'â', 'ã', 'ä', 'å',
		'Ā', 'ā', 'Ă', 'ă', 'Ą', 'ą', 'Ǎ', 'ǎ', 'Ǟ', 'ǟ', 'Ǡ', 'ǡ',
		'Ǻ', 'ǻ', 'Ȁ', 'ȁ', 'Ȃ', 'ȃ', 'Ȧ', 'ȧ', 'Ḁ', 'ḁ', 'Ạ', 'ạ',
		'Ả', 'ả', 'Ấ', 'ấ', 'Ầ', 'ầ', 'Ẩ', 'ẩ', 'Ẫ', 'ẫ', 'Ậ', 'ậ',
		'Ắ', 'ắ', 'Ằ', 'ằ', 'Ẳ', 'ẳ', 'Ẵ', 'ẵ', 'Ặ', 'ặ':
		return "a"
	case 'Æ', 'æ', 'Ǣ', 'ǣ', 'Ǽ', 'ǽ':
		return "ae"
	case 'Ḃ', 'ḃ', 'Ḅ', 'ḅ', 'Ḇ', 'ḇ', 'ƀ', 'Ƀ', 'Ɓ', 'ɓ':
		return "b"
	case 'Ç', 'ç', 'Ć', 'ć', 'Ĉ', 'ĉ', 'Ċ', 'ċ', 'Č', 'č', 'Ḉ', 'ḉ':
		return "c"
	case 'Ď', 'ď', 'Ḋ', 'ḋ', 'Ḍ', 'ḍ', 'Ḏ', 'ḏ', 'Ḑ', 'ḑ', 'Ḓ', 'ḓ',
		'Đ', 'đ', 'Ð', 'ð', 'Ɗ', 'ɗ':
		return "d"
	case 'Ǆ', 'ǅ', 'ǆ', 'Ǳ', 'ǲ', 'ǳ':
		return "dz"
	case 'È', 'É', 'Ê', 'Ë', 'è', 'é', 'ê', 'ë', 'Ē', 'ē', 'Ĕ', 'ĕ',
		'Ė', 'ė', 'Ę', 'ę', 'Ě', 'ě', 'Ȅ', 'ȅ', 'Ȇ', 'ȇ', 'Ȩ', 'ȩ',
		'Ḕ', 'ḕ', 'Ḗ', 'ḗ', 'Ḙ', 'ḙ', 'Ḛ', 'ḛ', 'Ḝ', 'ḝ', 'Ẹ', 'ẹ',
		'Ẻ', 'ẻ', 'Ẽ', 'ẽ', 'Ế', 'ế', 'Ề', 'ề', 'Ể', 'ể', 'Ễ', 'ễ',
		'Ệ', 'ệ', 'Ə', 'ə', 'ǝ', 'Ǝ', 'Ɛ', 'ɛ':
		return "e"
	case 'Ḟ', 'ḟ', 'Ƒ', 'ƒ':
		return "f"
	case 'Ĝ', 'ĝ', 'Ğ', 'ğ', 'Ġ', 'ġ', 'Ģ', 'ģ', 'Ǧ', 'ǧ', 'Ǵ', 'ǵ',
		'Ḡ', 'ḡ', 'Ǥ', 'ǥ':
		return "g"
	case 'Ĥ', 'ĥ', 'Ȟ', 'ȟ', 'Ḣ', 'ḣ', 'Ḥ', 'ḥ', 'Ḧ', 'ḧ', 'Ḩ', 'ḩ',
		'Ḫ', 'ḫ', 'ẖ', 'Ħ', 'ħ':
		return "h"
	case 'Ì', 'Í', 'Î', 'Ï', 'ì', 'í', 'î', 'ï', 'Ĩ', 'ĩ', 'Ī', 'ī',
		'Ĭ', 'ĭ', 'Į', 'į', 'İ', 'Ǐ', 'ǐ', 'Ȉ', 'ȉ', 'Ȋ', 'ȋ', 'Ḭ',
		'ḭ', 'Ḯ', 'ḯ', 'Ỉ', 'ỉ', 'Ị', 'ị', 'ı', 'Ɨ', 'ɨ':
		return "i"
	case 'Ĳ', 'ĳ':
		return "ij"
	case 'Ĵ', 'ĵ', 'ǰ', 'ȷ':
		return "j"
	case 'Ķ', 'ķ', 'Ǩ', 'ǩ', 'Ḱ', 'ḱ', 'Ḳ', 'ḳ', 'Ḵ', 'ḵ', 'ĸ', 'Ƙ',
		'ƙ':
		return "k"
	case 'Ĺ', 'ĺ', 'Ļ', 'ļ', 'Ľ', 'ľ', 'Ḷ', 'ḷ', 'Ḹ', 'ḹ', 'Ḻ', 'ḻ',
		'Ḽ', 'ḽ', 'Ł', 'ł', 'Ŀ', 'ŀ', 'ƚ', 'Ƚ':
		return "l"
	case 'Ǉ', 'ǈ', 'ǉ':
		return "lj"
	case 'Ḿ', 'ḿ', 'Ṁ', 'ṁ', 'Ṃ', 'ṃ':
		return "m"
	case 'Ñ', 'ñ', 'Ń', 'ń', 'Ņ', 'ņ', 'Ň', 'ň', 'Ǹ', 'ǹ', 'Ṅ', 'ṅ',
		'Ṇ', 'ṇ', 'Ṉ', 'ṉ', 'Ṋ', 'ṋ', 'ŉ':
		return "n"
	case 'Ŋ', 'ŋ':
		return "ng"
	case 'Ǌ', 'ǋ', 'ǌ':
		return "nj"
	case 'Ò', 'Ó', 'Ô', 'Õ', 'Ö', 'ò', 'ó', 'ô', 'õ', 'ö', 'Ō', 'ō',
		'Ŏ', 'ŏ', 'Ő', 'ő', 'Ơ', 'ơ', 'Ǒ', 'ǒ', 'Ǫ', 'ǫ', 'Ǭ', 'ǭ',
		'Ȍ', 'ȍ', 'Ȏ', 'ȏ', 'Ȫ', 'ȫ', 'Ȭ', 'ȭ', 'Ȯ', 'ȯ', 'Ȱ', 'ȱ',
		'Ṍ', 'ṍ', 'Ṏ', 'ṏ', 'Ṑ', 'ṑ', 'Ṓ', 'ṓ', 'Ọ', 'ọ', 'Ỏ', 'ỏ',
		'Ố', 'ố', 'Ồ', 'ồ', 'Ổ', 'ổ', 'Ỗ', 'ỗ', 'Ộ', 'ộ', 'Ớ', 'ớ',
		'Ờ', 'ờ', 'Ở', 'ở', 'Ỡ', 'ỡ', 'Ợ', 'ợ', 'Ø', 'ø', 'Ǿ', 'ǿ',
		'Ɔ', 'ɔ':
		return "o"
	case 'Œ', 'œ':
		return "oe"
	case 'Ṕ', 'ṕ', 'Ṗ', 'ṗ':
		return "p"
	case 'Ŕ', 'ŕ', 'Ŗ', 'ŗ', 'Ř', 'ř', 'Ȑ', 'ȑ', 'Ȓ', 'ȓ', 'Ṙ', 'ṙ',
		'Ṛ', 'ṛ', 'Ṝ', 'ṝ', 'Ṟ', 'ṟ':
		return "r"
	case 'Ś', 'ś', 'Ŝ', 'ŝ', 'Ş', 'ş', 'Š', 'š', 'Ș', 'ș', 'Ṡ', 'ṡ',
		'Ṣ', 'ṣ', 'Ṥ', 'ṥ', 'Ṧ', 'ṧ', 'Ṩ', 'ṩ', 'ſ', 'ẛ':
		return "s"
	case 'ß', 'ẞ':
		return "ss"
	case 'Ţ', 'ţ', 'Ť', 'ť', 'Ț', 'ț', 'Ṫ', 'ṫ', 'Ṭ', 'ṭ', 'Ṯ', 'ṯ',
		'Ṱ', 'ṱ', 'ẗ', 'Ŧ', 'ŧ':
		return "t"
	case 'Þ', 'þ':
		return "th"
	case 'Ù', 'Ú', 'Û', 'Ü', 'ù', 'ú', 'û', 'ü', 'Ũ', 'ũ', 'Ū', 'ū',
		'Ŭ', 'ŭ', 'Ů', 'ů', 'Ű', 'ű', 'Ų', 'ų', 'Ư', 'ư', 'Ǔ', 'ǔ',
		'Ǖ', 'ǖ', 'Ǘ', 'ǘ', 'Ǚ', 'ǚ', 'Ǜ', 'ǜ', 'Ȕ', 'ȕ', 'Ȗ', 'ȗ',
		'Ṳ', 'ṳ', 'Ṵ', 'ṵ', 'Ṷ', 'ṷ', 'Ṹ', 'ṹ', 'Ṻ', 'ṻ', 'Ụ', 'ụ',
		'Ủ', 'ủ', 'Ứ', 'ứ', 'Ừ', 'ừ', 'Ử', 'ử', 'Ữ', 'ữ', 'Ự', 'ự',
		'Ʉ', 'ʉ':
		return "u"
	case 'Ṽ', 'ṽ', 'Ṿ', 'ṿ':
		return "v"
	case 'Ŵ', 'ŵ', 'Ẁ', 'ẁ', 'Ẃ', 'ẃ', 'Ẅ', 'ẅ', 'Ẇ', 'ẇ', 'Ẉ', 'ẉ',
		'ẘ':
		return "w"
	case 'Ẋ', 'ẋ', 'Ẍ', 'ẍ':
		return "x"
	case 'Ý', 'ý', 'ÿ', 'Ŷ', 'ŷ', 'Ÿ', 'Ȳ', 'ȳ', 'Ẏ', 'ẏ', 'ẙ', 'Ỳ',
		'ỳ', 'Ỵ', 'ỵ', 'Ỷ', 'ỷ', 'Ỹ', 'ỹ', 'Ƴ', 'ƴ':
		return "y"
	case 'Ź', 'ź', 'Ż', 'ż', 'Ž', 'ž', 'Ẑ', 'ẑ', 'Ẓ', 'ẓ', 'Ẕ', 'ẕ',
		'Ƶ', 'ƶ':
		return "z"
	}
	return ""
}
