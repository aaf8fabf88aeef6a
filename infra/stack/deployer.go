package stack

// DeployerRole is a role the account that runs `up` needs, and where it is granted.
type DeployerRole struct {
	Role, On, Why string
}

// DeployerRoles are what a project admin grants a non-Owner deployer (a person, or
// CI's deployer account) before the first `up`. Every grant is on the project or on
// something that exists before the stack (the KMS key): a grant on an account the
// stack itself creates cannot be made before the first `up` creates it. docs/deploy.md
// "Deploy a project" lists them; a test keeps the two the same.
var DeployerRoles = []DeployerRole{
	{"roles/serviceusage.serviceUsageAdmin", "project", "enable the APIs, create the Pub/Sub service identity"},
	{"roles/iam.serviceAccountAdmin", "project", "create the two service accounts, grant token creator on the invoker"},
	{"roles/iam.serviceAccountUser", "project", "act as the pipeline account (Cloud Run's identity) and the invoker (the push subscription's OIDC identity); on the project because they do not exist before the first `up` (afterwards it can be narrowed to those two accounts)"},
	{"roles/iam.roleAdmin", "project", "the custom role that lets the pipeline predict on its endpoint and do nothing else there"},
	{"roles/resourcemanager.projectIamAdmin", "project", "the project-level grants (Firestore with its condition, metrics, traces)"},
	{"roles/storage.admin", "project", "buckets, their IAM and the notification"},
	{"roles/pubsub.admin", "project", "topics, subscriptions and their IAM"},
	{"roles/run.admin", "project", "the Cloud Run service and its invoker grants"},
	{"roles/aiplatform.admin", "project", "the endpoint and its IAM (`model deploy` also uploads and deploys models)"},
	{"roles/datastore.owner", "project", "the Firestore database and its indexes"},
	{"roles/artifactregistry.admin", "project", "the repository (and pushing images to it)"},
	{"roles/monitoring.editor", "project", "channels, alert policies, metric descriptors, the dashboard"},
	{"roles/cloudkms.admin", "the key", "with `visionstack:kmsKey` only: grant the Cloud Storage agent on it"},
}
