// Package operator owns the table of mail operators: which MX host names each
// provider runs (every Microsoft 365 tenant's *.mail.protection.outlook.com
// name is Microsoft's, every Google Workspace domain's MX is Google's), the
// politeness limits that apply to each operator as a whole, and what each is
// known to do at RCPT time (answer 250 to everything).
//
// It is the one table for three uses: the pipeline keeps sessions and RCPT
// rates per operator, across host names and egresses; the output's provider
// column names the operator of the MX host that answered; reply rules may
// match on it. The documented default is configs/operators.yaml; a user's
// table adds operators or replaces them by name.
//
// The package only reads tables and matches names: no network, no clock, no
// state beyond the read-only Table. Limits are enforced by the pipeline.
package operator
