package registry

import (
	"errors"
	"fmt"
)

// Sentinel errors, matched with errors.Is against the errors Client methods
// return.
var (
	// ErrNotFound: the subject, version or schema id is unknown (Confluent
	// error codes 404xx).
	ErrNotFound = errors.New("registry: not found")
	// ErrIncompatible: the schema breaks the subject's compatibility level
	// (HTTP 409; error code 409, or 40901 on newer Confluent releases). The
	// *Error's Message is the registry's explanation and names the field.
	ErrIncompatible = errors.New("registry: incompatible schema")
	// ErrInvalidSchema: the registry could not parse the schema (42201).
	ErrInvalidSchema = errors.New("registry: invalid schema")
)

// Error is a failed registry call. Get at it with errors.As; compare with
// the sentinels through errors.Is.
type Error struct {
	Op      string // "register", "lookup", "schema by id", "latest", "check compatibility"
	Subject string // when the call named one
	ID      int    // when the call named one
	// Code is the registry's error_code, or 0 when the failure happened
	// before a registry error came back (network, timeout, unexpected
	// response); Err then holds the cause.
	Code    int
	Message string
	Err     error
}

func (e *Error) Error() string {
	target := ""
	switch {
	case e.Subject != "":
		target = fmt.Sprintf(" subject %q", e.Subject)
	case e.ID != 0:
		target = fmt.Sprintf(" id %d", e.ID)
	}
	if e.Code != 0 {
		return fmt.Sprintf("registry: %s%s: error_code %d: %s", e.Op, target, e.Code, e.Message)
	}
	return fmt.Sprintf("registry: %s%s: %v", e.Op, target, e.Err)
}

// Unwrap exposes the transport error, so errors.Is(err,
// context.DeadlineExceeded) and the like work.
func (e *Error) Unwrap() error { return e.Err }

// Is maps registry error codes onto the sentinels.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Code/100 == 404
	case ErrIncompatible:
		return e.Code == 409 || e.Code == 40901
	case ErrInvalidSchema:
		return e.Code == 42201
	}
	return false
}
