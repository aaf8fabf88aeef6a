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

// database: a Firestore database of its own, with the composite indexes the
// runtime's queries need (config.FirestoreIndexes).
//
// DeletionPolicy DELETE: the provider's default, ABANDON, makes `destroy` drop the
// database from the stack and leave it in the project (the provider skips the delete),
// and the next `up` of the same project then collides with it. Delete protection,
// on unless the project turns it off, is what keeps `destroy` from deleting data.
func (b *builder) database() error {
	var err error
	b.db, err = firestore.NewDatabase(b.ctx, b.names.Database, &firestore.DatabaseArgs{
		Project: pulumi.String(b.cfg.GCP.Project), Name: pulumi.String(b.names.Database),
		LocationId: pulumi.String(b.cfg.GCP.Region), Type: pulumi.String("FIRESTORE_NATIVE"),
		DeleteProtectionState: pulumi.String(deleteProtection(b.cfg.GCP.DeleteProtection)),
		DeletionPolicy:        pulumi.String("DELETE"),
	}, b.opts()...)
	if err != nil {
		return err
	}
	for _, ix := range config.FirestoreIndexes {
		var fields firestore.IndexFieldArray
		for _, f := range ix.Fields {
			order := "ASCENDING"
			if f.Descending {
				order = "DESCENDING"
			}
			fields = append(fields, firestore.IndexFieldArgs{FieldPath: pulumi.String(f.Path), Order: pulumi.String(order)})
		}
		if _, err := firestore.NewIndex(b.ctx, b.names.Database+"-"+ix.Name, &firestore.IndexArgs{
			Project: pulumi.String(b.cfg.GCP.Project), Database: b.db.Name, Collection: pulumi.String(ix.Collection), Fields: fields,
		}, b.opts()...); err != nil {
			return err
		}
	}
	return nil
}
