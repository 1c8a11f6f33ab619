// Package ascii tests text 8 bytes at a time, for the checks that every
// row or every reply of a run passes through (is this cell plain text, may
// this address go into a command): the bit tricks of Sean Eron Anderson's
// "Bit Twiddling Hacks" (determine if a word has a byte less than n, or
// equal to n), on little-endian words read from strings.
//
// It owns nothing but these word operations; what counts as plain is its
// callers' to say (output's cells, probe's command arguments).
package ascii
