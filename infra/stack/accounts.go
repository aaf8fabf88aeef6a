package stack

import (
	"github.com/pulumi/pulumi-gcp/sdk/v7/go/gcp/serviceaccount"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// accounts: the pipeline runs as one identity, Pub/Sub pushes as another.
func (b *builder) accounts() error {
	var err error
	b.pipelineSA, err = serviceaccount.NewAccount(b.ctx, b.names.PipelineSA, &serviceaccount.AccountArgs{
		Project: pulumi.String(b.cfg.GCP.Project), AccountId: pulumi.String(b.names.PipelineSA),
		DisplayName: pulumi.String("visionstack " + b.cfg.Name + " pipeline"),
	}, b.opts()...)
	if err != nil {
		return err
	}
	b.invokerSA, err = serviceaccount.NewAccount(b.ctx, b.names.InvokerSA, &serviceaccount.AccountArgs{
		Project: pulumi.String(b.cfg.GCP.Project), AccountId: pulumi.String(b.names.InvokerSA),
		DisplayName: pulumi.String("visionstack " + b.cfg.Name + " Pub/Sub push invoker"),
	}, b.opts()...)
	return err
}
