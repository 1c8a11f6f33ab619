// Package configs owns bulkverify's configuration: the documented default file
// bulkverify.yaml (embedded, so the file and the built-in defaults cannot drift
// apart) and the strict loader that overlays a user's file on those defaults.
package configs
