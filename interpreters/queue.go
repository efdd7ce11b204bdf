package interpreters

// Queue is a cross-interpreter FIFO queue owned by the supervisor.
type Queue struct {
	rt *Runtime
	id int64
}

// ID returns the queue's ID.
func (q *Queue) ID() int64 { return q.id }

func (rt *Runtime) queueID(v any) (int64, bool) {
	q, ok := v.(*Queue)
	if !ok || q == nil || q.rt != rt {
		return 0, false
	}
	return q.id, true
}

func (rt *Runtime) queueHandle(id int64) any {
	return &Queue{rt: rt, id: id}
}
