package cluster

import (
	"testing"
	"time"
)

// A stage's bubble is the time with steps in flight that it did not
// compute; time with nothing in flight counts for no stage, and a busy
// report arriving after its span closed never makes a bubble shrink.
func TestStageClock(t *testing.T) {
	var c stageClock
	t0 := time.Now()
	c.sent()
	c.sent() // two in flight: one span
	time.Sleep(40 * time.Millisecond)
	c.done()
	c.busy(0, 30*time.Millisecond)
	c.done()
	span := time.Since(t0)
	time.Sleep(40 * time.Millisecond) // idle: nothing in flight
	got := c.read(time.Now())
	if len(got) != 1 || !got[0].seen || got[0].busy != 30*time.Millisecond {
		t.Fatalf("stages %+v, want stage 0 busy 30ms", got)
	}
	if b := got[0].bubble; b < 10*time.Millisecond || b > span-30*time.Millisecond {
		t.Errorf("bubble %v after a %v span with 30 ms busy, then 40 ms idle; idle time leaked in or busy not subtracted", b, span)
	}
	c.busy(0, 20*time.Millisecond) // late report: the bubble must hold
	if again := c.read(time.Now()); again[0].bubble != got[0].bubble {
		t.Errorf("bubble went from %v to %v", got[0].bubble, again[0].bubble)
	}
}
