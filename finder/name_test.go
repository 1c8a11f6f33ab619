package finder

import "testing"

func TestSplitName(t *testing.T) {
	tests := []struct {
		in   string
		want Person
	}{
		{"Ada Lovelace", Person{First: "Ada", Last: "Lovelace"}},
		{"  Ada \t  Lovelace ", Person{First: "Ada", Last: "Lovelace"}},
		{"Lovelace, Ada", Person{First: "Ada", Last: "Lovelace"}},
		{"Ada B. Lovelace", Person{First: "Ada", Middle: "B.", Last: "Lovelace"}},
		{"Ada Augusta King Lovelace", Person{First: "Ada", Middle: "Augusta King", Last: "Lovelace"}},
		// Word order cannot tell a double surname from a middle name…
		{"José María García López", Person{First: "José", Middle: "María García", Last: "López"}},
		// …the comma form can.
		{"García López, José María", Person{First: "José", Middle: "María", Last: "García López"}},
		{"José María de la Cruz", Person{First: "José", Middle: "María", Last: "de la Cruz"}},
		{"Vincent van der Berg", Person{First: "Vincent", Last: "van der Berg"}},
		{"Ludwig van Beethoven", Person{First: "Ludwig", Last: "van Beethoven"}},
		{"Van Morrison", Person{First: "Van", Last: "Morrison"}}, // a particle is never the first name
		{"Dr. Jane Smith-Jones PhD", Person{First: "Jane", Last: "Smith-Jones"}},
		{"Prof. Dr. Hans Müller", Person{First: "Hans", Last: "Müller"}},
		{"Martin Luther King Jr.", Person{First: "Martin", Middle: "Luther", Last: "King"}},
		{"King, Martin Luther, Jr.", Person{First: "Martin", Middle: "Luther", Last: "King"}},
		{"John Smith, Ph.D.", Person{First: "John", Last: "Smith"}},
		{"Jack Ma", Person{First: "Jack", Last: "Ma"}}, // Ma is a surname, not a degree
		{`Robert "Bob" Smith`, Person{First: "Robert", Last: "Smith"}},
		{"Robert (Bob) Smith", Person{First: "Robert", Last: "Smith"}},
		{"Conan O'Brien", Person{First: "Conan", Last: "O'Brien"}},
		{"O'Brien", Person{First: "O'Brien"}}, // a single word is a first name
		{"Cher", Person{First: "Cher"}},
		{"Dr.", Person{First: "Dr."}}, // a title alone is kept
		{"Jr.", Person{First: "Jr."}}, // so is a suffix alone
		{"Lovelace, Dr. Ada", Person{First: "Ada", Last: "Lovelace"}},
		{"", Person{}},
		{" , ", Person{}},
	}
	for _, tt := range tests {
		if got := SplitName(tt.in); got != tt.want {
			t.Errorf("SplitName(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestPersonFromParts(t *testing.T) {
	tests := []struct {
		first, last string
		want        Person
	}{
		{"Ada", "Lovelace", Person{First: "Ada", Last: "Lovelace"}},
		{"Ada B.", "Lovelace", Person{First: "Ada", Middle: "B.", Last: "Lovelace"}},
		{"José María", "García López", Person{First: "José", Middle: "María", Last: "García López"}},
		{"Vincent", "van der Berg", Person{First: "Vincent", Last: "van der Berg"}},
		{"Dr. Jane", "Smith-Jones PhD", Person{First: "Jane", Last: "Smith-Jones"}},
		{"", "Lovelace", Person{Last: "Lovelace"}},
		{" Ada ", "", Person{First: "Ada"}},
		{"", "", Person{}},
	}
	for _, tt := range tests {
		if got := PersonFromParts(tt.first, tt.last); got != tt.want {
			t.Errorf("PersonFromParts(%q, %q) = %+v, want %+v", tt.first, tt.last, got, tt.want)
		}
	}
}
