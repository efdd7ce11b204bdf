package daemon

import (
	"errors"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/subinterp/subinterp/protocol"
	"github.com/subinterp/subinterp/supervisor"
)

// metrics are the daemon's Prometheus metrics, in a registry of its own so
// that several daemons in one process (tests) do not collide.
type metrics struct {
	reg     *prometheus.Registry
	calls   *prometheus.CounterVec
	latency *prometheus.HistogramVec
}

// newMetrics registers the daemon's metrics; a cluster node's each carry
// the label node="NAME", so one Prometheus can tell the nodes apart.
func newMetrics(sup *supervisor.Supervisor, conns func() int, node string) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "subinterp_calls_total",
			Help: "Calls made through the daemon (exec, call, prepare_main), by method and outcome: ok or the error code.",
		}, []string{"method", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "subinterp_call_duration_seconds",
			Help:    "Latency of calls made through the daemon, by method.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10), // 100µs … 26s
		}, []string{"method"}),
	}
	var reg prometheus.Registerer = m.reg
	if node != "" {
		reg = prometheus.WrapRegistererWith(prometheus.Labels{"node": node}, reg)
	}
	reg.MustRegister(
		m.calls, m.latency,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "subinterp_interpreters_alive",
			Help: "Interpreters alive now.",
		}, func() float64 { return float64(len(sup.List())) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "subinterp_interpreters_created_total",
			Help: "Interpreters created since the daemon started, by clients or from Lua.",
		}, func() float64 { return float64(sup.Totals().Created) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "subinterp_interpreters_crashed_total",
			Help: "Interpreters whose worker process ended on its own (killed, crashed, out of memory).",
		}, func() float64 { return float64(sup.Totals().Crashed) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "subinterp_connections",
			Help: "Client connections open now.",
		}, func() float64 { return float64(conns()) }),
		queueCollector{sup},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// observe records one call's outcome and latency.
func (m *metrics) observe(method string, err error, d time.Duration) {
	outcome := "ok"
	if err != nil {
		outcome = string(protocol.CodeInterpreter)
		var e *protocol.Error
		if errors.As(err, &e) {
			outcome = string(e.Code)
		}
	}
	m.calls.WithLabelValues(method, outcome).Inc()
	m.latency.WithLabelValues(method).Observe(d.Seconds())
}

// queueCollector reports queue depths at scrape time: queues come and go
// too often to keep gauges for them.
type queueCollector struct{ sup *supervisor.Supervisor }

var (
	queueItemsDesc = prometheus.NewDesc("subinterp_queue_items", "Items in each queue now.", []string{"queue"}, nil)
	queuesDesc     = prometheus.NewDesc("subinterp_queues", "Queues alive now.", nil, nil)
)

func (queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- queueItemsDesc
	ch <- queuesDesc
}

func (c queueCollector) Collect(ch chan<- prometheus.Metric) {
	qs := c.sup.Queues()
	ch <- prometheus.MustNewConstMetric(queuesDesc, prometheus.GaugeValue, float64(len(qs)))
	for _, q := range qs {
		ch <- prometheus.MustNewConstMetric(queueItemsDesc, prometheus.GaugeValue, float64(q.Size), strconv.FormatInt(q.ID, 10))
	}
}
