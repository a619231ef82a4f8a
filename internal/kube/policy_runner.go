package kube

import (
	"context"
	"time"
)

// runner calls fn after changes, coalescing them: a change marks it dirty
// (Mark never blocks), and fn, which reads the whole desired state, runs
// once for every change that arrived before it began. At most one call is
// in flight; calls begin at least min apart, so a burst of changes (a
// Deployment scaling up, a namespace's pods relabelled) costs one or two
// calls, not one per object. After a failure fn runs again after a backoff
// that doubles from firstBackoff up to maxBackoff, whether or not anything
// changed, and no sooner either: a kernel that refuses the transaction is
// not retried at the rate of the cluster's churn.
//
// It is kube-proxy's async.BoundedFrequencyRunner without the periodic
// run: with informers that do not resync, nothing changes unless an
// event says so.
type runner struct {
	fn         func(context.Context) error
	min        time.Duration
	maxBackoff time.Duration
	// failed is told each failure and the wait before the retry.
	failed func(err error, retry time.Duration)
	dirty  chan struct{}
}

func newRunner(fn func(context.Context) error, minInterval, maxBackoff time.Duration, failed func(error, time.Duration)) *runner {
	return &runner{fn: fn, min: minInterval, maxBackoff: max(maxBackoff, firstBackoff(minInterval)), failed: failed, dirty: make(chan struct{}, 1)}
}

// firstBackoff is the wait before the first retry: ten minimum
// intervals, and never under 100 ms.
func firstBackoff(minInterval time.Duration) time.Duration {
	return max(10*minInterval, 100*time.Millisecond)
}

// Mark says something changed; the next call of fn sees it.
func (r *runner) Mark() {
	select {
	case r.dirty <- struct{}{}:
	default:
	}
}

// Loop runs fn as marks and retries ask, until ctx is done.
func (r *runner) Loop(ctx context.Context) {
	var (
		last    time.Time     // when the last call began
		backoff time.Duration // 0 after a success
		retry   *time.Timer
		retryC  <-chan time.Time
	)
	defer func() {
		if retry != nil {
			retry.Stop()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.dirty:
		case <-retryC:
		}
		gap := r.min
		if backoff > 0 {
			gap = backoff
		}
		if wait := time.Until(last.Add(gap)); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		// Whatever was marked until now, this call covers: fn reads the
		// listers after the informers updated them, since an informer
		// updates its store before it calls the handlers.
		select {
		case <-r.dirty:
		default:
		}
		last = time.Now()
		err := r.fn(ctx)
		if ctx.Err() != nil {
			return
		}
		if retry != nil {
			retry.Stop()
			retry, retryC = nil, nil
		}
		if err == nil {
			backoff = 0
			continue
		}
		backoff = min(max(2*backoff, firstBackoff(r.min)), r.maxBackoff)
		retry = time.NewTimer(backoff)
		retryC = retry.C
		if r.failed != nil {
			r.failed(err, backoff)
		}
	}
}
