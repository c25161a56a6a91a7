package embedded

import "fmt"

// CanRead reports, by the Avro specification's resolution rules, why data
// written with writer cannot be read with reader ("" when it can), naming
// the field where resolution breaks. Stages use it to refuse to start on a
// topic whose data their schema cannot read.
func CanRead(reader, writer string) (string, error) {
	r, err := parseAvro(reader, nil)
	if err != nil {
		return "", fmt.Errorf("reader schema: %w", err)
	}
	w, err := parseAvro(writer, nil)
	if err != nil {
		return "", fmt.Errorf("writer schema: %w", err)
	}
	return compatible(r, w, "this build's schema", "the registered schema"), nil
}
