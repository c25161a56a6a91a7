package embedded

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// Confluent Schema Registry error codes (the "error_code" field of an error
// body). The HTTP status is the first three digits, except for the
// incompatible-schema error whose code is the bare status 409.
const (
	codeSubjectNotFound            = 40401
	codeVersionNotFound            = 40402
	codeSchemaNotFound             = 40403
	codeSubjectSoftDeleted         = 40404
	codeSubjectNotSoftDeleted      = 40405
	codeVersionSoftDeleted         = 40406
	codeVersionNotSoftDeleted      = 40407
	codeSubjectCompatNotConfigured = 40408
	codeSubjectModeNotConfigured   = 40409
	codeIncompatibleSchema         = 409
	codeInvalidSchema              = 42201
	codeInvalidVersion             = 42202
	codeInvalidCompatibility       = 42203
	codeInvalidMode                = 42204
	codeOperationNotPermitted      = 42205
	codeReferenceExists            = 42206
	codeInvalidSubject             = 42208
	codeSchemaTooLarge             = 42209
	codeStoreError                 = 50001
)

// contentType is the media type of every response body.
const contentType = "application/vnd.schemaregistry.v1+json"

// apiError is an error that maps onto a Confluent-style JSON error response.
type apiError struct {
	status int
	code   int
	msg    string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %d: %s", e.status, e.code, e.msg) }

func newErr(status, code int, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, msg: fmt.Sprintf(format, args...)}
}

func errSubjectNotFound(subject string) *apiError {
	return newErr(http.StatusNotFound, codeSubjectNotFound, "Subject '%s' not found.", subject)
}

func errVersionNotFound(subject string, version int) *apiError {
	return newErr(http.StatusNotFound, codeVersionNotFound, "Version %d not found for subject '%s'.", version, subject)
}

func errSchemaNotFound() *apiError {
	return newErr(http.StatusNotFound, codeSchemaNotFound, "Schema not found")
}

func errSchemaIDNotFound(id int) *apiError {
	return newErr(http.StatusNotFound, codeSchemaNotFound, "Schema %d not found", id)
}

func errInvalidSchema(format string, args ...any) *apiError {
	return newErr(http.StatusUnprocessableEntity, codeInvalidSchema, format, args...)
}

func errInvalidVersion(v string) *apiError {
	return newErr(http.StatusUnprocessableEntity, codeInvalidVersion,
		"The specified version '%s' is not a valid version id. Use a number between 1 and 2147483647, or \"latest\".", v)
}

func errReadOnly(subject string) *apiError {
	return newErr(http.StatusUnprocessableEntity, codeOperationNotPermitted, "Subject '%s' is in read-only mode", subject)
}

func errStore(err error) *apiError {
	return newErr(http.StatusInternalServerError, codeStoreError, "Error in the backend data store: %v", err)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error_code":50001,"message":"cannot encode response"}`)
	}
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		ae = newErr(http.StatusInternalServerError, codeStoreError, "%v", err)
	}
	writeJSON(w, ae.status, struct {
		Code    int    `json:"error_code"`
		Message string `json:"message"`
	}{ae.code, ae.msg})
}
