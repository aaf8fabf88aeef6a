package stack

import (
	"encoding/json"
	"fmt"

	"github.com/pulumi/pulumi-gcp/sdk/v7/go/gcp/monitoring"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/visionstack/visionstack/runtime/config"
)

// Alert thresholds.
const (
	Alert5xxRatio        = 0.05   // of requests, over 5 minutes
	AlertP95LatencyMS    = 30_000 // request latency
	AlertOldestUnackedS  = 900    // oldest message waiting on the push subscription
	AlertDeadLetterCount = 0      // any message in the dead-letter subscription
)

// monitoring: e-mail channels, alert policies and a dashboard.
func (b *builder) monitoring() error {
	proj := pulumi.String(b.cfg.GCP.Project)
	var channels pulumi.StringArray
	for i, email := range b.cfg.Monitoring.AlertEmails {
		ch, err := monitoring.NewNotificationChannel(b.ctx, fmt.Sprintf("%s-email-%d", b.cfg.Name, i), &monitoring.NotificationChannelArgs{
			Project: proj, Type: pulumi.String("email"), DisplayName: pulumi.String("visionstack " + b.cfg.Name + " " + email),
			Labels: pulumi.StringMap{"email_address": pulumi.String(email)},
		}, b.opts()...)
		if err != nil {
			return err
		}
		channels = append(channels, ch.ID())
	}
	run := fmt.Sprintf(`resource.type="cloud_run_revision" AND resource.labels.service_name="%s"`, b.names.RunService)
	sub := func(id string) string {
		return fmt.Sprintf(`resource.type="pubsub_subscription" AND resource.labels.subscription_id="%s"`, id)
	}
	type cond struct {
		name, filter, denominator, aligner, reducer string
		threshold                                   float64
		reads                                       *config.Metric // a runtime metric: declared before the alert
	}
	conds := []cond{
		{"5xx ratio", run + ` AND metric.type="run.googleapis.com/request_count" AND metric.labels.response_code_class="5xx"`,
			run + ` AND metric.type="run.googleapis.com/request_count"`, "ALIGN_RATE", "REDUCE_SUM", Alert5xxRatio, nil},
		{"p95 latency", run + ` AND metric.type="run.googleapis.com/request_latencies"`, "", "ALIGN_PERCENTILE_95", "REDUCE_MAX", AlertP95LatencyMS, nil},
		{"oldest unacked message", sub(b.names.PushSubscription) + ` AND metric.type="pubsub.googleapis.com/subscription/oldest_unacked_message_age"`, "", "ALIGN_MAX", "REDUCE_MAX", AlertOldestUnackedS, nil},
		{"dead-lettered messages", sub(b.names.DeadLetterSub) + ` AND metric.type="pubsub.googleapis.com/subscription/num_undelivered_messages"`, "", "ALIGN_MAX", "REDUCE_MAX", AlertDeadLetterCount, nil},
	}
	// An undeployed endpoint or a missing role: every image is retried until it is fixed.
	conds = append(conds, cond{"model configuration errors", b.workload(config.MetricModelErrors) + ` AND metric.labels.kind="config"`,
		"", "ALIGN_DELTA", "REDUCE_SUM", 0, &config.MetricModelErrors})
	for _, d := range b.cfg.Monitoring.Drift.Each() {
		conds = append(conds, cond{"prediction drift (" + d.Analysis + ")", b.workload(config.MetricDriftPSI) + fmt.Sprintf(` AND metric.labels.analysis="%s"`, d.Analysis),
			"", "ALIGN_MAX", "REDUCE_MAX", d.Threshold, &config.MetricDriftPSI})
	}
	descriptors := map[string]pulumi.Resource{}
	for _, c := range conds {
		var after []pulumi.ResourceOption
		if c.reads != nil {
			d, ok := descriptors[c.reads.Name]
			if !ok {
				var err error
				if d, err = b.descriptor(*c.reads); err != nil {
					return err
				}
				descriptors[c.reads.Name] = d
			}
			after = append(after, pulumi.DependsOn([]pulumi.Resource{d}))
		}
		th := monitoring.AlertPolicyConditionConditionThresholdArgs{
			Filter: pulumi.String(c.filter), Comparison: pulumi.String("COMPARISON_GT"), ThresholdValue: pulumi.Float64(c.threshold),
			Duration: pulumi.String("300s"),
			Aggregations: monitoring.AlertPolicyConditionConditionThresholdAggregationArray{monitoring.AlertPolicyConditionConditionThresholdAggregationArgs{
				AlignmentPeriod: pulumi.String("60s"), PerSeriesAligner: pulumi.String(c.aligner), CrossSeriesReducer: pulumi.String(c.reducer)}},
		}
		if c.denominator != "" {
			th.DenominatorFilter = pulumi.String(c.denominator)
			th.DenominatorAggregations = monitoring.AlertPolicyConditionConditionThresholdDenominatorAggregationArray{monitoring.AlertPolicyConditionConditionThresholdDenominatorAggregationArgs{
				AlignmentPeriod: pulumi.String("60s"), PerSeriesAligner: pulumi.String("ALIGN_RATE"), CrossSeriesReducer: pulumi.String("REDUCE_SUM")}}
		}
		_, err := monitoring.NewAlertPolicy(b.ctx, b.cfg.Name+" "+c.name, &monitoring.AlertPolicyArgs{
			Project: proj, DisplayName: pulumi.String("visionstack " + b.cfg.Name + ": " + c.name), Combiner: pulumi.String("OR"),
			Conditions:           monitoring.AlertPolicyConditionArray{monitoring.AlertPolicyConditionArgs{DisplayName: pulumi.String(c.name), ConditionThreshold: th}},
			NotificationChannels: channels, UserLabels: b.labels(),
		}, b.opts(after...)...)
		if err != nil {
			return err
		}
	}
	dash, err := json.Marshal(b.dashboard())
	if err != nil {
		return err
	}
	_, err = monitoring.NewDashboard(b.ctx, b.cfg.Name+"-dashboard", &monitoring.DashboardArgs{Project: proj, DashboardJson: pulumi.String(string(dash))}, b.opts()...)
	return err
}

// descriptor declares one of the runtime's metrics in Cloud Monitoring. Until the
// runtime writes it, the metric does not exist, and an alert on it is refused
// ("Cannot find metric(s) that match type"): on a fresh project the first `up`
// would stop there. The runtime's exporter writes the same type, kind and labels.
func (b *builder) descriptor(m config.Metric) (*monitoring.MetricDescriptor, error) {
	kind, value := "CUMULATIVE", "INT64"
	switch m.Kind {
	case config.Gauge:
		kind, value = "GAUGE", "DOUBLE"
	case config.Histogram:
		value = "DISTRIBUTION"
	case config.UpDown:
		kind = "GAUGE"
	}
	labels := monitoring.MetricDescriptorLabelArray{monitoring.MetricDescriptorLabelArgs{Key: pulumi.String("project"), ValueType: pulumi.String("STRING")}}
	for _, l := range m.Labels {
		labels = append(labels, monitoring.MetricDescriptorLabelArgs{Key: pulumi.String(l), ValueType: pulumi.String("STRING")})
	}
	return monitoring.NewMetricDescriptor(b.ctx, b.cfg.Name+"-"+m.Name, &monitoring.MetricDescriptorArgs{
		Project: pulumi.String(b.cfg.GCP.Project), Type: pulumi.String(m.CloudType()), MetricKind: pulumi.String(kind),
		ValueType: pulumi.String(value), Unit: pulumi.String(m.Unit), Description: pulumi.String(m.Description),
		DisplayName: pulumi.String(m.Name), Labels: labels,
	}, b.opts()...)
}

// workload filters one of the runtime's metrics to this project's series, on the
// monitored resource the exporter writes it on (config.CloudMetricResource).
func (b *builder) workload(m config.Metric) string {
	return fmt.Sprintf(`resource.type="%s" AND resource.labels.job="%s" AND metric.type="%s" AND metric.labels.project="%s"`,
		config.CloudMetricResource, config.TelemetryService(b.cfg.Name), m.CloudType(), b.cfg.Name)
}

// dashboard is a Cloud Monitoring dashboard: service traffic and latency, queue
// health, and the runtime's own step and model metrics.
func (b *builder) dashboard() map[string]any {
	chart := func(title, filter, aligner string) map[string]any {
		return map[string]any{"title": title, "xyChart": map[string]any{"dataSets": []any{map[string]any{
			"timeSeriesQuery": map[string]any{"timeSeriesFilter": map[string]any{"filter": filter,
				"aggregation": map[string]any{"alignmentPeriod": "60s", "perSeriesAligner": aligner}}}}}}}
	}
	run := fmt.Sprintf(`resource.type="cloud_run_revision" AND resource.labels.service_name="%s"`, b.names.RunService)
	own := b.workload
	widgets := []any{
		chart("Requests by status", run+` AND metric.type="run.googleapis.com/request_count"`, "ALIGN_RATE"),
		chart("Request latency p95", run+` AND metric.type="run.googleapis.com/request_latencies"`, "ALIGN_PERCENTILE_95"),
		chart("Oldest unacked push message", fmt.Sprintf(`resource.type="pubsub_subscription" AND resource.labels.subscription_id="%s" AND metric.type="pubsub.googleapis.com/subscription/oldest_unacked_message_age"`, b.names.PushSubscription), "ALIGN_MAX"),
		chart("Dead-lettered messages", fmt.Sprintf(`resource.type="pubsub_subscription" AND resource.labels.subscription_id="%s" AND metric.type="pubsub.googleapis.com/subscription/num_undelivered_messages"`, b.names.DeadLetterSub), "ALIGN_MAX"),
		chart("Step latency p95 (by step)", own(config.MetricStepDuration), "ALIGN_PERCENTILE_95"),
		chart("Jobs by outcome (ok, retried, quarantined, dead-lettered)", own(config.MetricJobs), "ALIGN_RATE"),
		chart("Model latency p95", own(config.MetricModelDuration), "ALIGN_PERCENTILE_95"),
		chart("Model errors", own(config.MetricModelErrors), "ALIGN_RATE"),
		chart("Images in flight", own(config.MetricInflight), "ALIGN_MEAN"),
		chart("Bytes read", own(config.MetricBytes), "ALIGN_RATE"),
		chart("Pixels decoded", own(config.MetricPixels), "ALIGN_RATE"),
		chart("Prediction drift (PSI)", own(config.MetricDriftPSI), "ALIGN_MAX"),
		chart("Prediction drift (KS)", own(config.MetricDriftKS), "ALIGN_MAX"),
		chart("Anonymization re-checks (clean, re-anonymized, quarantined)", own(config.MetricRechecks), "ALIGN_RATE"),
		chart("Detections per image p50 (by model version)", own(config.MetricPredictionBoxes), "ALIGN_PERCENTILE_50"),
		chart("Detection confidence p50 (by model version)", own(config.MetricPredictionConfidence), "ALIGN_PERCENTILE_50"),
		chart("Detections by label and model version", own(config.MetricPredictionLabels), "ALIGN_RATE"),
	}
	return map[string]any{"displayName": "visionstack " + b.cfg.Name, "gridLayout": map[string]any{"columns": "2", "widgets": widgets}}
}
