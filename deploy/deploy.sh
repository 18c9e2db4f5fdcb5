#!/usr/bin/env bash
# Deploy order-fanout to a Google Cloud project, or update a deployment; every step
# is idempotent, so running it again converges on the same state.
#
#   deploy/deploy.sh --project my-project [--region us-central1] [--queues N] [--dry-run]
#
# --queues N (default TASKS_QUEUE_COUNT, else 1) deploys a queue group of N queues
# (order-actions-00 ... N-1), each from deploy/queue.yaml; 1 is the single queue.
# With --dry-run it prints every command it would run and calls nothing (no
# credentials needed). The one value looked up (the project number, part of the
# services' URLs) appears in the plan as an assignment and ${PROJECT_NUMBER}.
set -euo pipefail

usage() {
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
  exit "${1:-0}"
}

PROJECT="${GOOGLE_CLOUD_PROJECT:-}"
REGION="${REGION:-us-central1}"
DRY_RUN=false
QUEUE_COUNT="${TASKS_QUEUE_COUNT:-1}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --project) PROJECT="${2:?--project needs a value}"; shift 2 ;;
    --region) REGION="${2:?--region needs a value}"; shift 2 ;;
    --queues) QUEUE_COUNT="${2:?--queues needs a value}"; shift 2 ;;
    --dry-run) DRY_RUN=true; shift ;;
    -h|--help) usage 0 ;;
    *) echo "deploy.sh: unknown argument '$1'" >&2; usage 2 ;;
  esac
done
if ! [[ "$QUEUE_COUNT" =~ ^[0-9]+$ ]] || (( 10#$QUEUE_COUNT < 1 || 10#$QUEUE_COUNT > 100 )); then
  echo "deploy.sh: --queues (TASKS_QUEUE_COUNT) is '$QUEUE_COUNT'; give a whole number from 1 to 100" >&2
  exit 2
fi
QUEUE_COUNT=$((10#$QUEUE_COUNT))
if [[ -z "$PROJECT" ]]; then
  echo "deploy.sh: say which project: --project PROJECT_ID (or GOOGLE_CLOUD_PROJECT)" >&2
  exit 2
fi

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
QUEUE="${TASKS_QUEUE:-order-actions}"
CONTINUATION_QUEUE="${FANOUT_CONTINUATION_QUEUE:-fanout-continuations}"
JOB="${SCHEDULER_JOB:-order-fanout}"
REPOSITORY="${ARTIFACT_REPOSITORY:-order-fanout}"
IMAGE="$REGION-docker.pkg.dev/$PROJECT/$REPOSITORY/order-fanout:${IMAGE_TAG:-latest}"
SA_DOMAIN="$PROJECT.iam.gserviceaccount.com"
FANOUT_SA="fanout@$SA_DOMAIN"             # runs the fanout service
WORKER_SA="worker@$SA_DOMAIN"             # runs the worker service
TASKS_SA="tasks-invoker@$SA_DOMAIN"       # in every task's OIDC token
SCHEDULER_SA="scheduler-invoker@$SA_DOMAIN"  # in the Scheduler job's OIDC token
CONSOLE_SA="console@$SA_DOMAIN"           # runs the console (it triggers runs as SCHEDULER_SA)
# Values the services must agree on with the files that configure their callers.
flag_value() { sed -n "s/^$1: *\"\{0,1\}\([0-9]*\).*/\1/p" "$2"; }
ATTEMPT_DEADLINE_S="$(flag_value --attempt-deadline "$ROOT/scheduler.yaml")"
MAX_ATTEMPTS="$(flag_value --max-attempts "$HERE/queue.yaml")"
# Requests one instance serves at once: the image's gunicorn runs GUNICORN_WORKERS (2)
# processes of GUNICORN_THREADS (16) threads (orders/serving.py). Cloud Run's default of
# 80 would send more than that, and they would wait in the container's backlog instead
# of making Cloud Run start another instance.
CONCURRENCY="${CLOUD_RUN_CONCURRENCY:-32}"
WAREHOUSE_URL="${WAREHOUSE_URL:-}"
if [[ -z "$WAREHOUSE_URL" ]]; then
  if ! $DRY_RUN; then
    echo "deploy.sh: set WAREHOUSE_URL to the warehouse's notification endpoint" >&2
    exit 2
  fi
  WAREHOUSE_URL='${WAREHOUSE_URL}'  # the plan shows where it goes
fi
G=(gcloud --project="$PROJECT" --quiet)

# Print the command; run it unless this is a dry run.
run() {
  printf '%s\n' "$*"
  if ! $DRY_RUN; then "$@"; fi
}

# Run CHECK quietly; when it fails, run CREATE. Both are printed in the plan.
ensure() {
  local check="$1" create="$2"
  printf '%s || %s\n' "$check" "$create"
  if ! $DRY_RUN; then
    eval "$check" >/dev/null 2>&1 || eval "$create"
  fi
}

# Set variable $1 to the output of gcloud lookup $2 (in a dry run: print the
# assignment and leave a ${...} reference, so the plan reads as a script).
lookup() {
  printf '%s=$(%s)\n' "$1" "${G[*]} $2"
  if $DRY_RUN; then
    printf -v "$1" '${%s}' "$1"
  else
    printf -v "$1" '%s' "$(eval "${G[*]} $2")"
  fi
}

# Cloud Run's deterministic URLs, known before the services exist: each service
# verifies tokens against its own URL, and each caller puts that URL in its tokens.
lookup PROJECT_NUMBER "projects describe $PROJECT --format='value(projectNumber)'"
WORKER_URL="https://order-worker-$PROJECT_NUMBER.$REGION.run.app"
FANOUT_URL="https://order-fanout-$PROJECT_NUMBER.$REGION.run.app"

echo "# 1. APIs"
run "${G[@]}" services enable run.googleapis.com cloudtasks.googleapis.com \
  cloudscheduler.googleapis.com firestore.googleapis.com artifactregistry.googleapis.com \
  cloudbuild.googleapis.com iam.googleapis.com monitoring.googleapis.com

echo "# 2. Service accounts"
for sa in fanout worker tasks-invoker scheduler-invoker console; do
  ensure "${G[*]} iam service-accounts describe $sa@$SA_DOMAIN" \
    "${G[*]} iam service-accounts create $sa --display-name='order-fanout $sa'"
done

echo "# 3. The image"
ensure "${G[*]} artifacts repositories describe $REPOSITORY --location=$REGION" \
  "${G[*]} artifacts repositories create $REPOSITORY --location=$REGION --repository-format=docker"
run "${G[@]}" builds submit "$ROOT" --tag="$IMAGE"

# The queue group's names, as orders/queue_group.py makes them.
GROUP=()
if (( QUEUE_COUNT == 1 )); then
  GROUP=("$QUEUE")
else
  for ((i = 0; i < QUEUE_COUNT; i++)); do GROUP+=("$(printf '%s-%02d' "$QUEUE" "$i")"); done
fi

echo "# 4. Queues: the group of $QUEUE_COUNT (${GROUP[*]}), each from deploy/queue.yaml, and the continuations' queue"
PAIRS=()
for name in "${GROUP[@]}"; do PAIRS+=("$name:$HERE/queue.yaml"); done
PAIRS+=("$CONTINUATION_QUEUE:$HERE/continuation-queue.yaml")
for pair in "${PAIRS[@]}"; do
  name="${pair%%:*}" flags="${pair#*:}"
  ensure "${G[*]} tasks queues describe $name --location=$REGION" \
    "${G[*]} tasks queues create $name --location=$REGION --flags-file=$flags"
  run "${G[@]}" tasks queues update "$name" --location="$REGION" --flags-file="$flags"
done

echo "# 5. The worker (private: only Cloud Tasks' account may call it)"
COMMON_ENV="GOOGLE_CLOUD_PROJECT=$PROJECT,TASKS_LOCATION=$REGION,TASKS_QUEUE=$QUEUE,TASKS_QUEUE_COUNT=$QUEUE_COUNT"
COMMON_ENV="$COMMON_ENV,TASKS_INVOKER_EMAIL=$TASKS_SA,WORKER_URL=$WORKER_URL"
run "${G[@]}" run deploy order-worker --image="$IMAGE" --region="$REGION" \
  --service-account="$WORKER_SA" --no-allow-unauthenticated --timeout=300 \
  --concurrency="$CONCURRENCY" \
  --set-env-vars="SERVICE=worker,$COMMON_ENV,TASKS_MAX_ATTEMPTS=$MAX_ATTEMPTS,WAREHOUSE_URL=$WAREHOUSE_URL"

echo "# 6. The fanout (private: only Scheduler's and the continuation account may call it)"
run "${G[@]}" run deploy order-fanout --image="$IMAGE" --region="$REGION" \
  --service-account="$FANOUT_SA" --no-allow-unauthenticated --timeout=300 \
  --set-env-vars="SERVICE=fanout,$COMMON_ENV,FANOUT_URL=$FANOUT_URL,SCHEDULER_INVOKER_EMAIL=$SCHEDULER_SA,FANOUT_CONTINUATION_QUEUE=$CONTINUATION_QUEUE,FANOUT_ATTEMPT_DEADLINE_SECONDS=$ATTEMPT_DEADLINE_S"

echo "# 7. Who may do what"
run "${G[@]}" run services add-iam-policy-binding order-worker --region="$REGION" \
  --member="serviceAccount:$TASKS_SA" --role=roles/run.invoker
run "${G[@]}" run services add-iam-policy-binding order-fanout --region="$REGION" \
  --member="serviceAccount:$SCHEDULER_SA" --role=roles/run.invoker
run "${G[@]}" run services add-iam-policy-binding order-fanout --region="$REGION" \
  --member="serviceAccount:$TASKS_SA" --role=roles/run.invoker
for role in roles/cloudtasks.enqueuer roles/datastore.user; do
  run "${G[@]}" projects add-iam-policy-binding "$PROJECT" \
    --member="serviceAccount:$FANOUT_SA" --role="$role" --condition=None
done
run "${G[@]}" projects add-iam-policy-binding "$PROJECT" \
  --member="serviceAccount:$WORKER_SA" --role=roles/datastore.user --condition=None
# The fanout puts the invoker's identity on every task it creates: it must act as it.
run "${G[@]}" iam service-accounts add-iam-policy-binding "$TASKS_SA" \
  --member="serviceAccount:$FANOUT_SA" --role=roles/iam.serviceAccountUser

echo "# 8. Firestore indexes (from deploy/firestore.indexes.json): the composite ones, then the"
echo "#    single-field exemptions of fields no query uses whose values only grow (see the README)"
python3 - "$HERE/firestore.indexes.json" <<'PY' | while IFS= read -r fields; do
import json, sys
for index in json.load(open(sys.argv[1]))["indexes"]:
    configs = " ".join(
        f"--field-config=field-path={f['fieldPath']},order={f['order'].lower()}"
        for f in index["fields"]
    )
    print(f"--collection-group={index['collectionGroup']} {configs}")
PY
  # An index that exists already is reported as such; that is success here.
  printf '%s composite create %s --async || true\n' "${G[*]} firestore indexes" "$fields"
  if ! $DRY_RUN; then
    # shellcheck disable=SC2086
    "${G[@]}" firestore indexes composite create $fields --async || true
  fi
done

python3 - "$HERE/firestore.indexes.json" <<'PY' | while IFS= read -r field; do
import json, sys
for override in json.load(open(sys.argv[1]))["fieldOverrides"]:
    if override.get("indexes") == []:
        print(f"{override['fieldPath']} --collection-group={override['collectionGroup']}")
PY
  printf '%s fields update %s --disable-indexes --async\n' "${G[*]} firestore indexes" "$field"
  if ! $DRY_RUN; then
    # shellcheck disable=SC2086
    "${G[@]}" firestore indexes fields update $field --disable-indexes --async
  fi
done

echo "# 9. The Scheduler job (scheduler.yaml with this deployment's values)"
RENDERED="$(mktemp -t scheduler.XXXXXX.yaml)"
trap 'rm -f "$RENDERED"' EXIT
sed -e "s|\${FANOUT_URL}|$FANOUT_URL|g" -e "s|\${SCHEDULER_SA}|$SCHEDULER_SA|g" \
  "$ROOT/scheduler.yaml" > "$RENDERED"
if $DRY_RUN; then
  echo "# scheduler.yaml as rendered:"
  sed 's/^/#   /' "$RENDERED"
fi
ensure "${G[*]} scheduler jobs describe $JOB --location=$REGION" \
  "${G[*]} scheduler jobs create http $JOB --location=$REGION --flags-file=$RENDERED"
run "${G[@]}" scheduler jobs update http "$JOB" --location="$REGION" --flags-file="$RENDERED"

echo "# 10. The console (private: no unauthenticated access; open it with"
echo "#     gcloud run services proxy order-console --region=$REGION --project=$PROJECT)"
run "${G[@]}" run deploy order-console --image="$IMAGE" --region="$REGION" \
  --service-account="$CONSOLE_SA" --no-allow-unauthenticated --timeout=300 \
  --set-env-vars="SERVICE=console,$COMMON_ENV,FANOUT_URL=$FANOUT_URL,CONSOLE_TRIGGER_AS=$SCHEDULER_SA,GUNICORN_WORKERS=1"
# Read Firestore; read queues and tasks, pause, resume and purge queues, run and delete tasks;
# read the queues' attempt counts in Cloud Monitoring (dispatches and retries per second).
for role in roles/datastore.viewer roles/cloudtasks.queueAdmin roles/cloudtasks.viewer \
  roles/cloudtasks.taskRunner roles/cloudtasks.taskDeleter roles/monitoring.viewer; do
  run "${G[@]}" projects add-iam-policy-binding "$PROJECT" \
    --member="serviceAccount:$CONSOLE_SA" --role="$role" --condition=None
done
# A run is triggered the way Scheduler triggers one: with an ID token of Scheduler's account.
run "${G[@]}" iam service-accounts add-iam-policy-binding "$SCHEDULER_SA" \
  --member="serviceAccount:$CONSOLE_SA" --role=roles/iam.serviceAccountOpenIdTokenCreator

echo "# Done: the worker at $WORKER_URL, the fanout at $FANOUT_URL, every 5 minutes."
echo "# The console: gcloud run services proxy order-console --region=$REGION --project=$PROJECT"
