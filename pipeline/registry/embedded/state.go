package embedded

import (
	"fmt"
	"slices"
	"sort"
)

// reference is a schema reference as carried in registration requests and
// responses: the named type Name is defined by Subject at Version.
type reference struct {
	Name    string `json:"name"`
	Subject string `json:"subject"`
	Version int    `json:"version"`
}

// storedSchema is one schema id. It lives as long as some subject version,
// live or soft-deleted, uses it; when the last such version is hard-deleted
// the id is gone for good (registering the schema again yields a new id, as
// with Confluent's registry). Ids are never handed out twice.
type storedSchema struct {
	ID         int         `json:"id"`
	SchemaType string      `json:"schemaType"`
	Schema     string      `json:"schema"`
	References []reference `json:"references,omitempty"`
	// Key is the identity key (see identityKey); persisted so that replay
	// needs no parsing.
	Key string `json:"key"`
}

type storedVersion struct {
	Version int  `json:"version"`
	ID      int  `json:"id"`
	Deleted bool `json:"deleted,omitempty"`
}

type subjectState struct {
	Name     string          `json:"name"`
	Versions []storedVersion `json:"versions,omitempty"` // ascending by Version
	Compat   string          `json:"compatibility,omitempty"`
	Mode     string          `json:"mode,omitempty"`
}

func (s *subjectState) find(version int) (int, bool) {
	i := sort.Search(len(s.Versions), func(i int) bool { return s.Versions[i].Version >= version })
	return i, i < len(s.Versions) && s.Versions[i].Version == version
}

func (s *subjectState) version(version int) (*storedVersion, bool) {
	i, ok := s.find(version)
	if !ok {
		return nil, false
	}
	return &s.Versions[i], true
}

func (s *subjectState) hasActive() bool {
	for _, v := range s.Versions {
		if !v.Deleted {
			return true
		}
	}
	return false
}

// latest returns the highest version, counting soft-deleted ones only when
// includeDeleted is set.
func (s *subjectState) latest(includeDeleted bool) (*storedVersion, bool) {
	for i := len(s.Versions) - 1; i >= 0; i-- {
		if includeDeleted || !s.Versions[i].Deleted {
			return &s.Versions[i], true
		}
	}
	return nil, false
}

func (s *subjectState) maxVersion() int {
	if len(s.Versions) == 0 {
		return 0
	}
	return s.Versions[len(s.Versions)-1].Version
}

func (s *subjectState) empty() bool {
	return len(s.Versions) == 0 && s.Compat == "" && s.Mode == ""
}

// state is the whole registry. It changes only through apply, so that the
// journal replays to exactly the same state.
type state struct {
	Seq          uint64
	NextID       int
	GlobalCompat string // "" = the server's default level
	GlobalMode   string // "" = READWRITE
	Schemas      map[int]*storedSchema
	Subjects     map[string]*subjectState
	byKey        map[string]int
}

func newState() *state {
	return &state{
		NextID:   1,
		Schemas:  make(map[int]*storedSchema),
		Subjects: make(map[string]*subjectState),
		byKey:    make(map[string]int),
	}
}

// Event operations.
const (
	opRegister      = "register"
	opDeleteVersion = "delete_version"
	opDeleteSubject = "delete_subject"
	opSetConfig     = "set_config"
	opSetMode       = "set_mode"
)

// event is one state change: the unit written to the journal.
type event struct {
	Seq       uint64        `json:"seq"`
	Op        string        `json:"op"`
	Subject   string        `json:"subject,omitempty"` // "" with set_config/set_mode means global
	Version   int           `json:"version,omitempty"`
	ID        int           `json:"id,omitempty"`
	Schema    *storedSchema `json:"schema,omitempty"`    // register: set when ID is new
	Drop      []int         `json:"drop,omitempty"`      // register: soft-deleted versions superseded by this one
	Permanent bool          `json:"permanent,omitempty"` // delete_*
	Value     string        `json:"value,omitempty"`     // set_config/set_mode: "" removes the setting
}

func (st *state) subject(name string) *subjectState {
	s := st.Subjects[name]
	if s == nil {
		s = &subjectState{Name: name}
		st.Subjects[name] = s
	}
	return s
}

func (st *state) dropIfEmpty(s *subjectState) {
	if s.empty() {
		delete(st.Subjects, s.Name)
	}
}

func (st *state) addSchema(sc *storedSchema) {
	st.Schemas[sc.ID] = sc
	st.byKey[sc.Key] = sc.ID
	if sc.ID >= st.NextID {
		st.NextID = sc.ID + 1
	}
}

// dropUnused forgets schema id once no subject version uses it.
func (st *state) dropUnused(id int) {
	for _, s := range st.Subjects {
		for _, v := range s.Versions {
			if v.ID == id {
				return
			}
		}
	}
	if sc, ok := st.Schemas[id]; ok {
		delete(st.Schemas, id)
		if st.byKey[sc.Key] == id {
			delete(st.byKey, sc.Key)
		}
	}
}

// apply performs ev. Handlers validate before building an event, so an error
// here means a journal that does not match the state it is replayed onto.
func (st *state) apply(ev *event) error {
	if ev.Seq != st.Seq+1 {
		return fmt.Errorf("event seq %d does not follow %d", ev.Seq, st.Seq)
	}
	switch ev.Op {
	case opRegister:
		if ev.Schema != nil {
			if ev.Schema.ID != ev.ID {
				return fmt.Errorf("register: schema id %d != event id %d", ev.Schema.ID, ev.ID)
			}
			if _, dup := st.Schemas[ev.ID]; dup {
				return fmt.Errorf("register: schema id %d already exists", ev.ID)
			}
			st.addSchema(ev.Schema)
		} else if _, ok := st.Schemas[ev.ID]; !ok {
			return fmt.Errorf("register: unknown schema id %d", ev.ID)
		}
		s := st.subject(ev.Subject)
		for _, v := range ev.Drop {
			if i, ok := s.find(v); ok {
				s.Versions = slices.Delete(s.Versions, i, i+1)
			}
		}
		i, exists := s.find(ev.Version)
		if exists {
			return fmt.Errorf("register: %s version %d already exists", ev.Subject, ev.Version)
		}
		s.Versions = slices.Insert(s.Versions, i, storedVersion{Version: ev.Version, ID: ev.ID})

	case opDeleteVersion:
		s, ok := st.Subjects[ev.Subject]
		if !ok {
			return fmt.Errorf("delete_version: unknown subject %q", ev.Subject)
		}
		i, ok := s.find(ev.Version)
		if !ok {
			return fmt.Errorf("delete_version: unknown version %s/%d", ev.Subject, ev.Version)
		}
		if !ev.Permanent {
			s.Versions[i].Deleted = true
			break
		}
		id := s.Versions[i].ID
		s.Versions = slices.Delete(s.Versions, i, i+1)
		if len(s.Versions) == 0 {
			// Like Confluent: the last version going away permanently takes
			// the subject's config and mode with it.
			s.Compat, s.Mode = "", ""
		}
		st.dropIfEmpty(s)
		st.dropUnused(id)

	case opDeleteSubject:
		s, ok := st.Subjects[ev.Subject]
		if !ok {
			return fmt.Errorf("delete_subject: unknown subject %q", ev.Subject)
		}
		if ev.Permanent {
			delete(st.Subjects, ev.Subject)
			for _, v := range s.Versions {
				st.dropUnused(v.ID)
			}
			break
		}
		for i := range s.Versions {
			s.Versions[i].Deleted = true
		}

	case opSetConfig:
		if ev.Subject == "" {
			st.GlobalCompat = ev.Value
			break
		}
		s := st.subject(ev.Subject)
		s.Compat = ev.Value
		st.dropIfEmpty(s)

	case opSetMode:
		if ev.Subject == "" {
			st.GlobalMode = ev.Value
			break
		}
		s := st.subject(ev.Subject)
		s.Mode = ev.Value
		st.dropIfEmpty(s)

	default:
		return fmt.Errorf("unknown event op %q", ev.Op)
	}
	st.Seq = ev.Seq
	return nil
}

// snapshot is the persisted form of a state.
type snapshot struct {
	Format       int             `json:"format"`
	Seq          uint64          `json:"seq"`
	NextID       int             `json:"next_id"`
	GlobalCompat string          `json:"global_compatibility,omitempty"`
	GlobalMode   string          `json:"global_mode,omitempty"`
	Schemas      []*storedSchema `json:"schemas"`
	Subjects     []*subjectState `json:"subjects"`
}

const snapshotFormat = 1

func (st *state) snapshot() *snapshot {
	snap := &snapshot{
		Format:       snapshotFormat,
		Seq:          st.Seq,
		NextID:       st.NextID,
		GlobalCompat: st.GlobalCompat,
		GlobalMode:   st.GlobalMode,
		Schemas:      make([]*storedSchema, 0, len(st.Schemas)),
		Subjects:     make([]*subjectState, 0, len(st.Subjects)),
	}
	for _, sc := range st.Schemas {
		snap.Schemas = append(snap.Schemas, sc)
	}
	sort.Slice(snap.Schemas, func(i, j int) bool { return snap.Schemas[i].ID < snap.Schemas[j].ID })
	for _, s := range st.Subjects {
		snap.Subjects = append(snap.Subjects, s)
	}
	sort.Slice(snap.Subjects, func(i, j int) bool { return snap.Subjects[i].Name < snap.Subjects[j].Name })
	return snap
}

func stateFromSnapshot(snap *snapshot) (*state, error) {
	if snap.Format != snapshotFormat {
		return nil, fmt.Errorf("unsupported snapshot format %d", snap.Format)
	}
	st := newState()
	st.Seq = snap.Seq
	st.GlobalCompat = snap.GlobalCompat
	st.GlobalMode = snap.GlobalMode
	for _, sc := range snap.Schemas {
		if _, dup := st.Schemas[sc.ID]; dup {
			return nil, fmt.Errorf("snapshot: duplicate schema id %d", sc.ID)
		}
		st.addSchema(sc)
	}
	if snap.NextID > st.NextID {
		st.NextID = snap.NextID
	}
	for _, s := range snap.Subjects {
		if !sort.SliceIsSorted(s.Versions, func(i, j int) bool { return s.Versions[i].Version < s.Versions[j].Version }) {
			return nil, fmt.Errorf("snapshot: versions of %q out of order", s.Name)
		}
		for _, v := range s.Versions {
			if _, ok := st.Schemas[v.ID]; !ok {
				return nil, fmt.Errorf("snapshot: %s version %d names unknown schema id %d", s.Name, v.Version, v.ID)
			}
		}
		st.Subjects[s.Name] = s
	}
	return st, nil
}
