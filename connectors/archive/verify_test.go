package archive

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestConfigValidate(t *testing.T) {
	if err := Defaults().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	c := Defaults()
	c.Dir, c.RotateBytes, c.RotateInterval = "", 1000, 0
	c.Common.Objective = ""
	err := c.Validate()
	for _, want := range []string{"objective:", "dir:", "rotate-bytes: 1000 is under 1024", "rotate-interval:"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to name %q", err, want)
		}
	}
}

// archiveOffsets writes one finished file holding the given offsets of
// topic/partition, named first-last.
func archiveOffsets(t *testing.T, root, topic string, p int32, offsets ...int64) {
	t.Helper()
	recs := records(t, len(offsets))
	for i, r := range recs {
		r.Topic, r.Partition, r.Offset = topic, p, offsets[i]
	}
	a := newTestArchiver(root)
	for _, r := range recs {
		if bad, err := a.Add(context.Background(), r); bad != nil || err != nil {
			t.Fatalf("Add: %v, %v", bad, err)
		}
	}
	if err := a.FinishAll(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestVerify(t *testing.T) {
	const topic = "rdv.iris.decisions"
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, topic))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	for p := int32(0); p < 2; p++ {
		for i := 0; i < 6; i++ {
			recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Value: []byte("v")})
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	root := t.TempDir()
	// Partition 0: complete, in two files.
	archiveOffsets(t, root, topic, 0, 0, 1, 2)
	archiveOffsets(t, root, topic, 0, 3, 4, 5)
	// Partition 1: offset 2 missing, 4 archived twice, and a file whose
	// range overlaps the one before it.
	archiveOffsets(t, root, topic, 1, 0, 1)
	archiveOffsets(t, root, topic, 1, 3, 4)
	archiveOffsets(t, root, topic, 1, 4, 5)

	reports, err := Verify(ctx, cl, root, "iris")
	if err != nil {
		t.Fatal(err)
	}
	if len(reports) != 2 || reports[0].Partition != 0 || reports[1].Partition != 1 {
		t.Fatalf("reports %+v", reports)
	}
	good, bad := reports[0], reports[1]
	if !good.OK() || good.Files != 2 || good.Archived != 6 || good.InTopic != 6 {
		t.Errorf("partition 0: %+v, want OK with 6 of 6 archived", good)
	}
	if bad.OK() {
		t.Fatalf("partition 1 reported OK: %+v", bad)
	}
	if !reflect.DeepEqual(bad.Missing, []int64{2}) || bad.Dupes != 1 || len(bad.Overlaps) != 1 || len(bad.Extra) != 0 ||
		bad.Archived != 6 || bad.InTopic != 6 || bad.Files != 3 {
		t.Errorf("partition 1: %+v, want offset 2 missing, one duplicate, one overlap", bad)
	}
}
