package stack

import (
	"github.com/pulumi/pulumi-gcp/sdk/v7/go/gcp/kms"
	"github.com/pulumi/pulumi-gcp/sdk/v7/go/gcp/storage"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// Lifecycle of the buckets.
const (
	IncomingRetentionDays   = 30 // originals are deleted after this
	ProcessedNoncurrentDays = 30 // old versions of outputs
	ModelNoncurrentDays     = 90 // old versions of model files
)

// buckets: private, uniform access, public access prevention enforced; processed is
// versioned; incoming expires; CMEK when a key is given.
func (b *builder) buckets() error {
	var after []pulumi.ResourceOption
	if b.args.KMSKey != "" {
		// Cloud Storage encrypts as its service agent: without this grant, creating a
		// CMEK bucket fails with 403. The agent is the whole GCP project's and the key
		// may serve other stacks: the grant is not this stack's to take away, so
		// `destroy` leaves it (another project's CMEK writes would fail without it).
		grant, err := kms.NewCryptoKeyIAMMember(b.ctx, b.cfg.Name+"-gcs-uses-kms-key", &kms.CryptoKeyIAMMemberArgs{
			CryptoKeyId: pulumi.String(b.args.KMSKey), Role: pulumi.String("roles/cloudkms.cryptoKeyEncrypterDecrypter"),
			Member: pulumi.Sprintf("serviceAccount:%s", b.gcsAgent()),
		}, b.opts(pulumi.RetainOnDelete(true))...)
		if err != nil {
			return err
		}
		after = append(after, pulumi.DependsOn([]pulumi.Resource{grant}))
	}
	mk := func(name string, versioned bool, rules storage.BucketLifecycleRuleArray) (*storage.Bucket, error) {
		args := &storage.BucketArgs{
			Project: pulumi.String(b.cfg.GCP.Project), Name: pulumi.String(name), Location: pulumi.String(b.cfg.GCP.Region),
			UniformBucketLevelAccess: pulumi.Bool(true), PublicAccessPrevention: pulumi.String("enforced"),
			Versioning: storage.BucketVersioningArgs{Enabled: pulumi.Bool(versioned)}, LifecycleRules: rules,
			Labels: b.labels(), ForceDestroy: pulumi.Bool(false),
		}
		if b.args.KMSKey != "" {
			args.Encryption = storage.BucketEncryptionArgs{DefaultKmsKeyName: pulumi.String(b.args.KMSKey)}
		}
		return storage.NewBucket(b.ctx, name, args, b.opts(after...)...)
	}
	var err error
	if b.incoming, err = mk(b.names.IncomingBucket, false, storage.BucketLifecycleRuleArray{
		storage.BucketLifecycleRuleArgs{Action: storage.BucketLifecycleRuleActionArgs{Type: pulumi.String("Delete")},
			Condition: storage.BucketLifecycleRuleConditionArgs{Age: pulumi.Int(IncomingRetentionDays)}},
	}); err != nil {
		return err
	}
	if b.processed, err = mk(b.names.ProcessedBucket, true, storage.BucketLifecycleRuleArray{
		storage.BucketLifecycleRuleArgs{Action: storage.BucketLifecycleRuleActionArgs{Type: pulumi.String("Delete")},
			// NoAge: without it the provider sends age 0, and "older than 0 days" is every object.
			Condition: storage.BucketLifecycleRuleConditionArgs{DaysSinceNoncurrentTime: pulumi.Int(ProcessedNoncurrentDays), NoAge: pulumi.Bool(true)}},
	}); err != nil {
		return err
	}
	if b.quarantine, err = mk(b.names.QuarantineBucket, false, nil); err != nil {
		return err
	}
	// Model files: versioned, so a deployed revision's pinned generation stays readable
	// after a new file replaces it; old versions kept ModelNoncurrentDays for a rollback.
	b.models, err = mk(b.names.ModelBucket, true, storage.BucketLifecycleRuleArray{
		storage.BucketLifecycleRuleArgs{Action: storage.BucketLifecycleRuleActionArgs{Type: pulumi.String("Delete")},
			Condition: storage.BucketLifecycleRuleConditionArgs{DaysSinceNoncurrentTime: pulumi.Int(ModelNoncurrentDays), NoAge: pulumi.Bool(true)}},
	})
	return err
}
