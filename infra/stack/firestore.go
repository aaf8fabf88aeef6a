package stack

import (
	"github.com/pulumi/pulumi-gcp/sdk/v7/go/gcp/firestore"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/visionstack/visionstack/runtime/config"
)

// database: a Firestore database of its own, with the index the job list needs.
func (b *builder) database() error {
	var err error
	b.db, err = firestore.NewDatabase(b.ctx, b.names.Database, &firestore.DatabaseArgs{
		Project: pulumi.String(b.cfg.GCP.Project), Name: pulumi.String(b.names.Database),
		LocationId: pulumi.String(b.cfg.GCP.Region), Type: pulumi.String("FIRESTORE_NATIVE"),
		DeleteProtectionState: pulumi.String("DELETE_PROTECTION_ENABLED"),
	}, b.opts()...)
	if err != nil {
		return err
	}
	_, err = firestore.NewIndex(b.ctx, b.names.Database+"-jobs-state-updated", &firestore.IndexArgs{
		Project: pulumi.String(b.cfg.GCP.Project), Database: b.db.Name, Collection: pulumi.String(config.JobsCollection),
		Fields: firestore.IndexFieldArray{
			firestore.IndexFieldArgs{FieldPath: pulumi.String("state"), Order: pulumi.String("ASCENDING")},
			firestore.IndexFieldArgs{FieldPath: pulumi.String("updated"), Order: pulumi.String("DESCENDING")},
		},
	}, b.opts()...)
	return err
}
