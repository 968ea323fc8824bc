"""Jobs: one job, its raw log (with HTTP Range), its artifacts and their downloads."""

from __future__ import annotations

import io
import logging
from typing import Annotated

import pydantic
import sqlalchemy as sa
from flask import Response, current_app, request, send_file, stream_with_context, url_for
from werkzeug.http import parse_range_header

from appliance.models import Artifact, PipelineStep
from appliance.pipelines import artifacts
from appliance.pipelines.logs import LogCorruptError, LogReader
from appliance.storage.objects import ObjectNotFound
from webapp.api import access
from webapp.api.errors import ApiError
from webapp.api.operations import Answer, Call, operation
from webapp.api.runs import JobOut, job_out
from webapp.api.schemas import Id, Timestamp

log = logging.getLogger(__name__)


class JobPath(pydantic.BaseModel):
    job_id: Id


class LogQuery(pydantic.BaseModel):
    attempt: int | None = pydantic.Field(None, ge=1, le=10_000, description="Default: the job's latest attempt.")


class ArtifactPath(JobPath):
    artifact: Annotated[str, pydantic.Field(min_length=1, max_length=100,
                                            description="The artifact's name, or its id.")]


class StepOut(pydantic.BaseModel):
    index: int
    name: str
    kind: str
    status: str
    exit_code: int | None
    started_at: Timestamp | None
    finished_at: Timestamp | None


class JobWithSteps(JobOut):
    steps: list[StepOut]
    log_url: str
    artifacts_url: str


class ArtifactOut(pydantic.BaseModel):
    id: int
    name: str
    size: int = pydantic.Field(description="Bytes of the .tar.gz archive.")
    sha256: str = pydantic.Field(description="Of the archive; the download is checked against it.")
    file_count: int
    created_at: Timestamp
    expires_at: Timestamp | None
    download_url: str


class ArtifactList(pydantic.BaseModel):
    items: list[ArtifactOut]


def _prts():
    return current_app.extensions["prts"]


@operation("GET", "/jobs/{job_id}", summary="One job with its steps", tag="jobs", scope="read",
           path_params=JobPath, answer=JobWithSteps)
def get_job(call: Call):
    with _prts().db.session() as s:
        _, job, _ = access.job(s, call.caller, call.path.job_id, "pipeline.view")
        steps = s.scalars(sa.select(PipelineStep).where(PipelineStep.job_id == job.id).order_by(PipelineStep.index))
        return JobWithSteps(
            **job_out(job).model_dump(),
            steps=[StepOut(index=st.index, name=st.name, kind=st.kind, status=st.status, exit_code=st.exit_code,
                           started_at=st.started_at, finished_at=st.finished_at) for st in steps],
            log_url=url_for("api.get_job_log", job_id=job.id, _external=True),
            artifacts_url=url_for("api.list_artifacts", job_id=job.id, _external=True))


@operation("GET", "/jobs/{job_id}/log", summary="The job's log as raw text", tag="jobs", scope="read",
           path_params=JobPath, query=LogQuery, media_type="text/plain", errors=(416,),
           also=(Answer(206, "The requested bytes of the log (see Content-Range).", None, "text/plain"),),
           headers=({"name": "Range", "in": "header", "required": False,
                     "description": "bytes=a-b, bytes=a- or bytes=-n", "schema": {"type": "string", "maxLength": 200}},),
           description="The text as stored (secrets masked). Supports `Range: bytes=a-b`, `bytes=a-` and "
                       "`bytes=-n` (206 with Content-Range); a range outside the log answers 416. A running "
                       "job's log grows: ask again from the last byte you have.")
def get_job_log(call: Call):
    with _prts().db.session() as s:
        _, job, _ = access.job(s, call.caller, call.path.job_id, "pipeline.view")
        current = job.attempt
    attempt = call.query.attempt or current
    if attempt > current:
        raise ApiError(404, "attempt", f"job {call.path.job_id} has no attempt {attempt} (latest: {current})")
    reader = LogReader(_prts(), call.path.job_id, attempt)
    total = reader.byte_count()
    start, stop, status = 0, total, 200
    headers = {"Accept-Ranges": "bytes", "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
    requested = parse_range_header(request.headers.get("Range"))
    # One byte range is served; any other Range header gets the whole log (RFC 9110 §14.2).
    if requested is not None and requested.units == "bytes" and len(requested.ranges) == 1:
        start, stop = _bounds(requested.ranges[0], total)
        if start >= stop:
            raise ApiError(416, "range", f"the log has {total} bytes", {"Content-Range": f"bytes */{total}"})
        status = 206
        headers["Content-Range"] = f"bytes {start}-{stop - 1}/{total}"
    headers["Content-Length"] = str(stop - start)

    def body():
        try:
            yield from reader.iter_bytes(start, stop)
        except LogCorruptError as exc:  # the status line is sent: the body ends short of Content-Length
            log.error("%s", exc)

    return Response(stream_with_context(body()), status=status, mimetype="text/plain", headers=headers)


def _bounds(wanted: tuple[int, int | None], total: int) -> tuple[int, int]:
    """[start, stop) of one parsed range within ``total`` bytes; empty when unsatisfiable.
    A suffix longer than the log means all of it (RFC 9110 §14.1.3), which werkzeug's
    ``range_for_length`` refuses."""
    first, stop = wanted
    if first < 0:  # bytes=-n: the last n
        return max(0, total + first), total
    return first, total if stop is None else min(stop, total)


def _artifact_out(artifact: Artifact) -> ArtifactOut:
    return ArtifactOut(id=artifact.id, name=artifact.name, size=artifact.size, sha256=artifact.sha256,
                       file_count=artifact.file_count, created_at=artifact.created_at,
                       expires_at=artifact.expires_at,
                       download_url=url_for("api.download_artifact", job_id=artifact.job_id,
                                            artifact=artifact.name, _external=True))


@operation("GET", "/jobs/{job_id}/artifacts", summary="The job's artifacts", tag="jobs", scope="read",
           path_params=JobPath, answer=ArtifactList)
def list_artifacts(call: Call):
    with _prts().db.session() as s:
        _, job, _ = access.job(s, call.caller, call.path.job_id, "pipeline.view")
        rows = s.scalars(sa.select(Artifact).where(Artifact.job_id == job.id).order_by(Artifact.name))
        return ArtifactList(items=[_artifact_out(a) for a in rows])


@operation("GET", "/jobs/{job_id}/artifacts/{artifact}", summary="Download an artifact (.tar.gz)", tag="jobs",
           scope="read", path_params=ArtifactPath, media_type="application/gzip", errors=(410,),
           description="By name, or by id when no artifact has that name. The archive is checked against "
                       "its stored sha256 first: a damaged one is refused (500), never served.")
def download_artifact(call: Call):
    app = _prts()
    with app.db.session() as s:
        _, job, _ = access.job(s, call.caller, call.path.job_id, "pipeline.view")
        wanted = call.path.artifact
        found = s.scalar(sa.select(Artifact).where(Artifact.job_id == job.id, Artifact.name == wanted))
        if found is None and wanted.isdigit() and len(wanted) < 19:
            found = s.scalar(sa.select(Artifact).where(Artifact.job_id == job.id, Artifact.id == int(wanted)))
        if found is None:
            raise ApiError(404, "artifact", f"job {job.id} has no artifact {wanted}")
    try:
        data = artifacts.open_download(app, found)
    except artifacts.ChecksumMismatch:
        log.error("artifact %s of job %s does not match its checksum", found.name, found.job_id)
        raise ApiError(500, "artifact", f"the stored archive of {found.name} does not match its checksum, "
                                        "so it is not served") from None
    except ObjectNotFound:
        raise ApiError(410, "artifact", f"the archive of {found.name} is no longer stored") from None
    response = send_file(io.BytesIO(data), mimetype="application/gzip", as_attachment=True,
                         download_name=f"{found.name}.tar.gz", max_age=0)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "private, no-store"
    return response
