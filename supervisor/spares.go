package supervisor

import (
	"context"
	"sync"

	"github.com/subinterp/subinterp/protocol"
)

// spares keeps workers started ahead of need, so Create claims one instead
// of paying for a process launch. A spare has no VM until it is claimed and
// told which interpreter it is.
type spares struct {
	mu       sync.Mutex
	ready    []*process
	starting int
}

// claimSpare makes a ready spare the worker of it, or returns nil when none
// is ready (or the one tried failed): the caller spawns one cold.
func (s *Supervisor) claimSpare(ctx context.Context, it *interp) (*process, error) {
	if s.cfg.WarmSpares <= 0 {
		return nil, nil
	}
	defer s.refillSpares()
	for {
		s.spare.mu.Lock()
		n := len(s.spare.ready)
		if n == 0 {
			s.spare.mu.Unlock()
			return nil, nil
		}
		p := s.spare.ready[n-1]
		s.spare.ready = s.spare.ready[:n-1]
		s.spare.mu.Unlock()
		select {
		case <-p.peer.Done():
			p.stop() // died while waiting; try the next
			continue
		default:
		}
		s.bind(p, it)
		if _, _, _, err := s.invoke(ctx, p, 0, protocol.MethodConfigure, &it.wcfg, nil); err != nil {
			p.stop()
			return nil, err
		}
		return p, nil
	}
}

// refillSpares starts workers in the background until WarmSpares are ready
// or starting.
func (s *Supervisor) refillSpares() {
	s.spare.mu.Lock()
	defer s.spare.mu.Unlock()
	for len(s.spare.ready)+s.spare.starting < s.cfg.WarmSpares {
		s.mu.RLock()
		closed := s.closed
		s.mu.RUnlock()
		if closed {
			return
		}
		s.spare.starting++
		s.watchers.Add(1)
		go func() {
			defer s.watchers.Done()
			p, err := s.startProcess(protocol.WorkerConfig{Spare: true})
			s.spare.mu.Lock()
			s.spare.starting--
			s.mu.RLock()
			closed := s.closed
			s.mu.RUnlock()
			if err == nil && !closed {
				s.spare.ready = append(s.spare.ready, p)
				p = nil
			}
			s.spare.mu.Unlock()
			if err != nil {
				s.cfg.Logger.Warn("starting a spare worker failed", "error", err)
			}
			if p != nil {
				p.stop()
			}
		}()
	}
}

// stopSpares ends every ready spare; the supervisor is closing.
func (s *Supervisor) stopSpares() {
	s.spare.mu.Lock()
	ready := s.spare.ready
	s.spare.ready = nil
	s.spare.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range ready {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.stop()
		}()
	}
	wg.Wait()
}

// SparesReady is the number of spare workers ready to be claimed.
func (s *Supervisor) SparesReady() int {
	s.spare.mu.Lock()
	defer s.spare.mu.Unlock()
	return len(s.spare.ready)
}
