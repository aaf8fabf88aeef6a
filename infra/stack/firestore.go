package stack

import (
	"github.com/pulumi/pulumi-gcp/sdk/v7/go/gcp/firestore"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/visionstack/visionstack/runtime/config"
)

// deleteProtection is the database's protection state: on unless the project says
// gcp.deleteProtection: false (then `visionstack destroy` can delete it).
func deleteProtection(on *bool) string {
	if on != nil && !*on {
		return "DELETE_PROTECTION_DISABLED"
	}
	return "DELETE_PROTECTION_ENABLED"
}

// database: a Firestore database of its own, with the index the job list needs.
func (b *builder) database() error {
	var err error
	b.db, err = firestore.NewDatabase(b.ctx, b.names.Database, &firestore.DatabaseArgs{
		Project: pulumi.String(b.cfg.GCP.Project), Name: pulumi.String(b.names.Database),
		LocationId: pulumi.String(b.cfg.GCP.Region), Type: pulumi.String("FIRESTORE_NATIVE"),
		DeleteProtectionState: pulumi.String(deleteProtection(b.cfg.GCP.DeleteProtection)),
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
